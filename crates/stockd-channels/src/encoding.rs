//! Percent-encoding for every connector: RFC 3986 §2.3's unreserved
//! characters (`A–Z a–z 0–9 - . _ ~`) are kept, every other byte of the
//! UTF-8 text becomes `%XX` with upper-case hex
//! (<https://www.rfc-editor.org/rfc/rfc3986#section-2.3>). This is the
//! encoding OAuth 1.0a signs (<https://www.rfc-editor.org/rfc/rfc5849#section-3.6>),
//! which WooCommerce checks with `rawurlencode` plus `~`, and what Amazon's
//! and Google's query strings and path segments take; a space is `%20`,
//! never `+`.

/// `input` with every byte outside the unreserved set as `%XX`.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if is_unreserved(byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(byte >> 4)] as char);
            out.push(HEX_UPPER[usize::from(byte & 0x0F)] as char);
        }
    }
    out
}

/// A query string `k1=v1&k2=v2` in the given order, keys and values
/// percent-encoded.
pub fn encode_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encode(k.as_ref()),
                percent_encode(v.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_are_kept() {
        let unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
        assert_eq!(percent_encode(unreserved), unreserved);
    }

    #[test]
    fn reserved_and_other_bytes_are_upper_case_hex() {
        assert_eq!(percent_encode(" "), "%20");
        assert_eq!(percent_encode("a+b"), "a%2Bb");
        assert_eq!(percent_encode("gen:/?#[]@"), "gen%3A%2F%3F%23%5B%5D%40");
        assert_eq!(
            percent_encode("!$&'()*,;="),
            "%21%24%26%27%28%29%2A%2C%3B%3D"
        );
        assert_eq!(percent_encode("%"), "%25");
        assert_eq!(percent_encode("\u{7f}\n"), "%7F%0A");
    }

    #[test]
    fn multi_byte_text_is_encoded_byte_by_byte() {
        // RFC 5849 §3.6 (<https://www.rfc-editor.org/rfc/rfc5849#section-3.6>):
        // UTF-8 first, then each octet.
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("☃"), "%E2%98%83");
    }

    #[test]
    fn every_byte_round_trips_through_its_encoding() {
        let all: String = (1u8..=0x7f).map(char::from).collect();
        let encoded = percent_encode(&all);
        let mut decoded = Vec::new();
        let bytes = encoded.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                assert_eq!(hex, hex.to_ascii_uppercase());
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                assert!(is_unreserved(bytes[i]));
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        assert_eq!(decoded, all.as_bytes());
    }

    #[test]
    fn pairs_keep_their_order_and_encode_both_sides() {
        assert_eq!(
            encode_pairs(&[("b key", "x&y"), ("a", "1=2")]),
            "b%20key=x%26y&a=1%3D2"
        );
        let owned = vec![("k".to_string(), "v w".to_string())];
        assert_eq!(encode_pairs(&owned), "k=v%20w");
        assert_eq!(encode_pairs::<&str, &str>(&[]), "");
    }
}
