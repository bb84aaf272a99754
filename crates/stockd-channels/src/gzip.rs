//! GZIP decoding (RFC 1952) with an INFLATE decoder (RFC 1951: stored,
//! fixed-Huffman and dynamic-Huffman blocks), for channel documents served
//! compressed (Amazon report documents with `compressionAlgorithm: GZIP`,
//! <https://developer-docs.amazon.com/sp-api/docs/retrieve-a-report>).
//! Concatenated members are decoded one after the other; every member's
//! CRC-32 and length are checked.

/// Most bytes one document may inflate to (guards against inflation bombs).
pub const MAX_OUTPUT: usize = 1 << 31;

/// Decodes a GZIP stream.
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let start = out.len();
        at = member(data, at, &mut out)?;
        let crc = u32::from_le_bytes(trailer(data, at)?);
        let size = u32::from_le_bytes(trailer(data, at + 4)?);
        if crc32(&out[start..]) != crc {
            return Err("CRC-32 mismatch".into());
        }
        if (out.len() - start) as u32 != size {
            return Err("length mismatch".into());
        }
        at += 8;
        if at >= data.len() || data[at..].iter().all(|&b| b == 0) {
            return Ok(out);
        }
    }
}

fn trailer(data: &[u8], at: usize) -> Result<[u8; 4], String> {
    data.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "truncated trailer".to_string())
}

/// Parses one member's header and inflates its body; returns where the
/// trailer starts.
fn member(data: &[u8], mut at: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    let header = data.get(at..at + 10).ok_or("truncated header")?;
    if header[0] != 0x1f || header[1] != 0x8b {
        return Err("not GZIP (bad magic)".into());
    }
    if header[2] != 8 {
        return Err("unknown compression method".into());
    }
    let flags = header[3];
    at += 10;
    if flags & 4 != 0 {
        let len = data.get(at..at + 2).ok_or("truncated extra field")?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            let end = data
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or("truncated header string")?;
            at += end + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    if at > data.len() {
        return Err("truncated header".into());
    }
    let mut inflater = Inflater {
        data,
        pos: at,
        bit_buf: 0,
        bit_count: 0,
        out,
    };
    inflater.inflate()?;
    Ok(inflater.pos)
}

/// CRC-32 (IEEE 802.3), as the GZIP trailer carries it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A canonical Huffman code: symbol counts per length and the symbols in
/// code order.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, String> {
        let mut counts = [0u16; 16];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &count in &counts[1..] {
            left = (left << 1) - i32::from(count);
            if left < 0 {
                return Err("over-subscribed Huffman code".into());
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbols[usize::from(offsets[usize::from(len)])] = symbol as u16;
                offsets[usize::from(len)] += 1;
            }
        }
        Ok(Huffman { counts, symbols })
    }
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order code-length code lengths come in (RFC 1951 §3.2.7).
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

struct Inflater<'a> {
    data: &'a [u8],
    pos: usize,
    bit_buf: u32,
    bit_count: u32,
    out: &'a mut Vec<u8>,
}

impl Inflater<'_> {
    fn bits(&mut self, need: u32) -> Result<u32, String> {
        while self.bit_count < need {
            let byte = *self.data.get(self.pos).ok_or("truncated DEFLATE stream")?;
            self.pos += 1;
            self.bit_buf |= u32::from(byte) << self.bit_count;
            self.bit_count += 8;
        }
        let value = self.bit_buf & ((1u32 << need) - 1);
        self.bit_buf >>= need;
        self.bit_count -= need;
        Ok(value)
    }

    fn decode(&mut self, code: &Huffman) -> Result<u16, String> {
        let (mut value, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            value |= self.bits(1)? as i32;
            let count = i32::from(code.counts[len]);
            if value - count < first {
                return Ok(code.symbols[(index + value - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            value <<= 1;
        }
        Err("invalid Huffman code".into())
    }

    fn inflate(&mut self) -> Result<(), String> {
        loop {
            let last = self.bits(1)?;
            match self.bits(2)? {
                0 => self.stored()?,
                1 => {
                    let mut lengths = [0u8; 288];
                    lengths[..144].fill(8);
                    lengths[144..256].fill(9);
                    lengths[256..280].fill(7);
                    lengths[280..].fill(8);
                    let lit = Huffman::new(&lengths)?;
                    let dist = Huffman::new(&[5u8; 30])?;
                    self.codes(&lit, &dist)?;
                }
                2 => {
                    let (lit, dist) = self.dynamic_codes()?;
                    self.codes(&lit, &dist)?;
                }
                _ => return Err("invalid block type".into()),
            }
            if last == 1 {
                // The trailer starts at the next byte boundary.
                self.bit_buf = 0;
                self.bit_count = 0;
                return Ok(());
            }
        }
    }

    fn stored(&mut self) -> Result<(), String> {
        self.bit_buf = 0;
        self.bit_count = 0;
        let header = self
            .data
            .get(self.pos..self.pos + 4)
            .ok_or("truncated stored block")?;
        let len = u16::from_le_bytes([header[0], header[1]]);
        let nlen = u16::from_le_bytes([header[2], header[3]]);
        if len != !nlen {
            return Err("stored block length check failed".into());
        }
        self.pos += 4;
        let end = self.pos + usize::from(len);
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or("truncated stored block")?;
        self.push_all(bytes)?;
        self.pos = end;
        Ok(())
    }

    fn push_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.out.len() + bytes.len() > MAX_OUTPUT {
            return Err("document too large".into());
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn dynamic_codes(&mut self) -> Result<(Huffman, Huffman), String> {
        let nlen = self.bits(5)? as usize + 257;
        let ndist = self.bits(5)? as usize + 1;
        let ncode = self.bits(4)? as usize + 4;
        if nlen > 286 || ndist > 30 {
            return Err("bad code counts".into());
        }
        let mut clen = [0u8; 19];
        for &at in CLEN_ORDER.iter().take(ncode) {
            clen[at] = self.bits(3)? as u8;
        }
        let clen_code = Huffman::new(&clen)?;
        let mut lengths = vec![0u8; nlen + ndist];
        let mut index = 0;
        while index < nlen + ndist {
            let symbol = self.decode(&clen_code)?;
            if symbol < 16 {
                lengths[index] = symbol as u8;
                index += 1;
                continue;
            }
            let (value, repeat) = match symbol {
                16 => {
                    if index == 0 {
                        return Err("repeat with no first length".into());
                    }
                    (lengths[index - 1], 3 + self.bits(2)? as usize)
                }
                17 => (0, 3 + self.bits(3)? as usize),
                _ => (0, 11 + self.bits(7)? as usize),
            };
            if index + repeat > nlen + ndist {
                return Err("too many lengths".into());
            }
            lengths[index..index + repeat].fill(value);
            index += repeat;
        }
        if lengths[256] == 0 {
            return Err("no end-of-block code".into());
        }
        Ok((
            Huffman::new(&lengths[..nlen])?,
            Huffman::new(&lengths[nlen..])?,
        ))
    }

    fn codes(&mut self, lit: &Huffman, dist: &Huffman) -> Result<(), String> {
        loop {
            let symbol = self.decode(lit)?;
            match symbol {
                0..=255 => self.push_all(&[symbol as u8])?,
                256 => return Ok(()),
                _ => {
                    let at = usize::from(symbol - 257);
                    if at >= 29 {
                        return Err("invalid length symbol".into());
                    }
                    let len = usize::from(LENGTH_BASE[at])
                        + self.bits(u32::from(LENGTH_EXTRA[at]))? as usize;
                    let d = usize::from(self.decode(dist)?);
                    if d >= 30 {
                        return Err("invalid distance symbol".into());
                    }
                    let distance =
                        usize::from(DIST_BASE[d]) + self.bits(u32::from(DIST_EXTRA[d]))? as usize;
                    if distance > self.out.len() {
                        return Err("distance too far back".into());
                    }
                    if self.out.len() + len > MAX_OUTPUT {
                        return Err("document too large".into());
                    }
                    let start = self.out.len() - distance;
                    for i in 0..len {
                        let byte = self.out[start + i];
                        self.out.push(byte);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `hello hello hello hello\n`, compressed with fixed Huffman codes and a
    /// back-reference (made with Python's `gzip`, level 9, mtime 0).
    const HELLO_FIXED: [u8; 29] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0x57, 0xc8, 0x40, 0x27, 0xb9, 0x00, 0x00, 0x88, 0x59, 0x0b, 0x18, 0x00, 0x00, 0x00,
    ];

    /// The rows of `listing_rows()`, compressed with dynamic Huffman codes.
    const ROWS_DYNAMIC: [u8; 358] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0x75, 0x94, 0xbb, 0x6e, 0x50,
        0x31, 0x10, 0x05, 0x6b, 0xe7, 0x5f, 0x90, 0x7c, 0xf6, 0xbd, 0x65, 0x50, 0xa0, 0x81, 0x2e,
        0xe4, 0x0b, 0x22, 0x0a, 0x7a, 0x94, 0xef, 0x8f, 0xc3, 0x9a, 0x0a, 0x8e, 0xeb, 0x91, 0xaf,
        0x3d, 0xb3, 0xbe, 0xcf, 0xdf, 0x5e, 0x3e, 0xed, 0xb3, 0xd6, 0xe7, 0xfd, 0x77, 0xad, 0xbd,
        0x9e, 0xbe, 0x7c, 0x7d, 0x7c, 0xf9, 0xfe, 0x63, 0x3d, 0xbe, 0xfe, 0xfe, 0xf5, 0xf6, 0xf3,
        0xe1, 0x79, 0x20, 0x5c, 0x28, 0x1b, 0xbd, 0x40, 0x20, 0x19, 0x08, 0x5e, 0x5a, 0x4b, 0x08,
        0xa4, 0x03, 0x89, 0xa6, 0xe7, 0x52, 0x02, 0xd9, 0x40, 0x8a, 0xc8, 0x58, 0x46, 0x20, 0xbf,
        0x50, 0x7b, 0xfb, 0x72, 0x02, 0xc5, 0x40, 0x96, 0x0e, 0x5b, 0x41, 0xa0, 0x1c, 0xc8, 0xdd,
        0x54, 0x57, 0x12, 0xa8, 0x06, 0x0a, 0x55, 0x97, 0x55, 0x04, 0xea, 0x81, 0x12, 0x92, 0x58,
        0xfd, 0x7f, 0x08, 0xd7, 0xf8, 0x87, 0xcb, 0xbd, 0x40, 0x94, 0xe3, 0x2a, 0xaf, 0xc4, 0xd9,
        0x15, 0xc4, 0x39, 0xae, 0xf3, 0xf6, 0x2d, 0xb5, 0x40, 0xa4, 0x63, 0xa4, 0x63, 0x4b, 0x5b,
        0xb2, 0xc6, 0x18, 0xe9, 0xc0, 0xae, 0x08, 0xd6, 0x18, 0x7e, 0xa1, 0xca, 0x72, 0xd6, 0x18,
        0x23, 0x1d, 0x12, 0x79, 0x4a, 0x92, 0xc6, 0x18, 0xe9, 0x50, 0x0b, 0x51, 0xd6, 0x18, 0x23,
        0x1d, 0x26, 0x6e, 0xc2, 0x1a, 0x63, 0xa4, 0xc3, 0xb7, 0x05, 0x58, 0x63, 0xd9, 0x17, 0x3a,
        0xb3, 0xb9, 0x59, 0x63, 0x19, 0xe7, 0x88, 0x90, 0x6e, 0xd6, 0x58, 0x46, 0x39, 0xd2, 0xe4,
        0x1c, 0x8f, 0x34, 0x96, 0x6b, 0xbc, 0x04, 0x9a, 0xb4, 0xb1, 0x5c, 0xe5, 0x7d, 0x66, 0x2f,
        0x68, 0x63, 0xb9, 0xce, 0x3b, 0x3b, 0x9d, 0x36, 0x96, 0x91, 0x2e, 0xdb, 0xab, 0x8d, 0x35,
        0x96, 0x91, 0x7e, 0x0e, 0x55, 0x67, 0x26, 0xd8, 0xf7, 0x46, 0xba, 0x08, 0x52, 0x85, 0x35,
        0x96, 0xbe, 0x50, 0x87, 0x83, 0x35, 0xd6, 0x91, 0xfe, 0xe7, 0xad, 0x6f, 0xd6, 0x58, 0x47,
        0xba, 0x98, 0x5b, 0x35, 0x6b, 0xac, 0x23, 0x5d, 0x5c, 0xed, 0x3c, 0x44, 0xd2, 0x58, 0x47,
        0xba, 0x04, 0xf4, 0x5c, 0x94, 0x34, 0x56, 0xbb, 0x50, 0x8b, 0x05, 0x6b, 0xac, 0xa3, 0x5c,
        0x32, 0x11, 0xce, 0x1a, 0xeb, 0x35, 0x5e, 0xbe, 0xcb, 0x68, 0x63, 0xbd, 0xca, 0x5b, 0x3f,
        0xfe, 0x7d, 0xac, 0xb1, 0x8e, 0xf3, 0xc3, 0xf4, 0x99, 0x2f, 0xd6, 0x58, 0xfb, 0x52, 0x55,
        0x86, 0x7f, 0x1b, 0xbf, 0x03, 0xed, 0x29, 0xc4, 0x31, 0xd1, 0x05, 0x00, 0x00,
    ];

    fn listing_rows() -> Vec<u8> {
        (0..40u64)
            .map(|i| {
                format!(
                    "SKU-{i:04}\tB0{:08}\t{}\tDEFAULT\tActive\n",
                    i * 7919 % 100_000_000,
                    i % 13
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn fixed_and_dynamic_blocks_inflate() {
        assert_eq!(gunzip(&HELLO_FIXED).unwrap(), b"hello hello hello hello\n");
        assert_eq!(gunzip(&ROWS_DYNAMIC).unwrap(), listing_rows());
        let mut twice = HELLO_FIXED.to_vec();
        twice.extend_from_slice(&HELLO_FIXED);
        assert_eq!(
            gunzip(&twice).unwrap(),
            b"hello hello hello hello\nhello hello hello hello\n"
        );
    }

    #[test]
    fn bad_magic_and_truncation_are_errors() {
        assert!(gunzip(b"plain text").is_err());
        assert!(gunzip(&[0x1f, 0x8b, 8, 0]).is_err());
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn a_corrupted_trailer_is_refused() {
        let mut data = HELLO_FIXED.to_vec();
        let n = data.len();
        data[n - 8] ^= 1;
        assert!(gunzip(&data).is_err());
    }
}
