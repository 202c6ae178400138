//! Status and header helpers shared by client and server: reading a status
//! from `grpc-status`/`grpc-message`/`grpc-status-details-bin`, writing one.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::metadata::{decode_base64, decode_grpc_message, encode_base64, encode_grpc_message, Metadata};
use crate::status::{Code, Status};

pub(crate) const CONTENT_TYPE: &str = "application/grpc";

/// Reads a status from trailers (or a trailers-only HEADERS frame); `None`
/// when `grpc-status` is absent. Trailing metadata is attached.
pub(crate) fn status_from_headers(h: &HeaderMap) -> Option<Status> {
    let raw = h.get("grpc-status")?;
    let (code, bad) = match raw.to_str().ok().and_then(|s| s.trim().parse::<i32>().ok()) {
        Some(c) => (Code::from_i32(c), false),
        None => (Code::Unknown, true),
    };
    let mut message = h.get("grpc-message").map(|m| decode_grpc_message(m.as_bytes())).unwrap_or_default();
    if bad {
        message = format!("grpc: malformed grpc-status {:?}: {message}", String::from_utf8_lossy(raw.as_bytes()));
    }
    let details =
        h.get("grpc-status-details-bin").and_then(|d| decode_base64(d.as_bytes())).map(Bytes::from).unwrap_or_default();
    Some(Status::new(code, message).with_details(details).with_metadata(Metadata::from_headers(h)))
}

/// Writes a status (and its trailing metadata) into a header map.
pub(crate) fn write_status(status: &Status, h: &mut HeaderMap) {
    h.insert("grpc-status", HeaderValue::from(status.code().as_i32()));
    if !status.message().is_empty() {
        if let Ok(v) = HeaderValue::from_str(&encode_grpc_message(status.message())) {
            h.insert("grpc-message", v);
        }
    }
    if !status.details().is_empty() {
        if let Ok(v) = HeaderValue::from_str(&encode_base64(status.details())) {
            h.insert("grpc-status-details-bin", v);
        }
    }
    status.metadata().write_to(h);
}

/// True for `application/grpc` and `application/grpc+<subtype>` / `;params`.
pub(crate) fn is_grpc_content_type(v: Option<&HeaderValue>) -> bool {
    let Some(v) = v.and_then(|v| v.to_str().ok()) else { return false };
    let v = v.to_ascii_lowercase();
    match v.strip_prefix(CONTENT_TYPE) {
        Some(rest) => rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        let mut md = Metadata::new();
        md.insert("x-t", "v").unwrap();
        let s = Status::new(Code::Aborted, "100% \u{1F608}\n").with_details(vec![1u8, 2, 3]).with_metadata(md);
        let mut h = HeaderMap::new();
        write_status(&s, &mut h);
        assert_eq!(status_from_headers(&h).unwrap(), s);
    }

    #[test]
    fn malformed_status_is_unknown() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("abc"));
        assert_eq!(status_from_headers(&h).unwrap().code(), Code::Unknown);
        h.insert("grpc-status", HeaderValue::from_static("99"));
        assert_eq!(status_from_headers(&h).unwrap().code(), Code::Unknown);
        assert!(status_from_headers(&HeaderMap::new()).is_none());
    }

    #[test]
    fn content_types() {
        for ok in ["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8", "Application/GRPC"] {
            assert!(is_grpc_content_type(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in ["application/json", "application/grpcx", "text/plain"] {
            assert!(!is_grpc_content_type(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!is_grpc_content_type(None));
    }
}
