//! Small codecs: base64url, form fields, and the DER needed to read an RSA public key.

use super::*;

pub(super) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    // Unpadded base64url per the note; padding is tolerated.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

pub(super) fn b64url(s: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

pub(super) fn form_get<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One DER TLV: (tag, content, rest).
pub(super) fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first & 0x80 == 0 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[hdr..end], &b[end..]))
}

pub(super) const RSA_ENCRYPTION_OID: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The PKCS#1 `RSAPublicKey` inside a SubjectPublicKeyInfo, which is what ring verifies with.
pub(super) fn spki_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, spki, _) = der_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, rest) = der_tlv(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_tlv(alg)?;
    if tag != 0x06 || oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (tag, bits, _) = der_tlv(rest)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    Some(bits[1..].to_vec())
}

/// Whether `der` is a PKCS#1 `RSAPublicKey`: SEQUENCE { INTEGER n, INTEGER e }.
pub(super) fn is_pkcs1(der: &[u8]) -> bool {
    let Some((0x30, seq, _)) = der_tlv(der) else {
        return false;
    };
    let Some((0x02, _, rest)) = der_tlv(seq) else {
        return false;
    };
    matches!(der_tlv(rest), Some((0x02, _, tail)) if tail.is_empty())
}

/// Accept PEM or DER, SubjectPublicKeyInfo or PKCS#1; return PKCS#1 DER.
pub(super) fn rsa_public_key(raw: &[u8]) -> Option<Vec<u8>> {
    let der = match std::str::from_utf8(raw) {
        Ok(text) if text.contains("-----BEGIN") => {
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::trim)
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?
        }
        _ => raw.to_vec(),
    };
    if let Some(k) = spki_to_pkcs1(&der) {
        return Some(k);
    }
    is_pkcs1(&der).then_some(der)
}
