//! `grpc-message` percent-encoding (PROTOCOL-HTTP2.md): bytes outside
//! 0x20..=0x7E and `%` itself are sent as `%XX`; decoding never fails.

/// Percent-encodes a status message's UTF-8 bytes.
pub fn encode_grpc_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for &b in msg.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a `grpc-message`. Invalid `%` sequences are kept as they are and
/// invalid UTF-8 becomes U+FFFD: a decoder must never fail.
pub fn decode_grpc_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_unicode_and_specials() {
        let m = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n 100%";
        let e = encode_grpc_message(m);
        assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert!(e.contains("%25"), "percent itself is encoded");
        assert_eq!(decode_grpc_message(e.as_bytes()), m);
    }

    #[test]
    fn decoder_never_fails() {
        assert_eq!(decode_grpc_message(b"50%"), "50%");
        assert_eq!(decode_grpc_message(b"%zz%4"), "%zz%4");
        assert_eq!(decode_grpc_message(b"%E2%98"), "\u{fffd}");
        assert_eq!(decode_grpc_message(b"a%20b"), "a b");
    }
}
