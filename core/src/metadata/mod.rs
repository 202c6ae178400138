//! Metadata (ASCII and `-bin` headers), reserved-header rules, `grpc-timeout`
//! and `grpc-message` percent-encoding.
//!
//! Binary values are sent base64 without padding and accepted padded or not.
//! Keys are lower-case `[0-9a-z_.-]`; `grpc-*` (but for the two retry keys
//! of gRFC A6), pseudo-headers and the transport's own headers are reserved
//! and rejected on insert.

mod timeout;
pub use timeout::{decode_timeout, encode_timeout};
mod percent;
pub use percent::{decode_grpc_message, encode_grpc_message};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;

/// A metadata value: ASCII text, or bytes for keys ending in `-bin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataValue {
    /// A printable-ASCII value.
    Ascii(String),
    /// A binary value (key ends with `-bin`).
    Binary(Bytes),
}

impl MetadataValue {
    /// The text of an ASCII value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::Ascii(s) => Some(s),
            MetadataValue::Binary(_) => None,
        }
    }
    /// The bytes of the value (ASCII values as their bytes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            MetadataValue::Ascii(s) => s.as_bytes(),
            MetadataValue::Binary(b) => b,
        }
    }
}

/// An ordered multimap of metadata entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, MetadataValue)>,
}

/// Headers owned by gRPC or HTTP/2 that users may not set and that are not
/// reported as metadata.
/// The `grpc-*` keys of gRFC A6 are the exception: a server sets
/// `grpc-retry-pushback-ms` in its trailers, a client sends
/// `grpc-previous-rpc-attempts` on a retry.
fn is_reserved(key: &str) -> bool {
    key.starts_with(':')
        || (key.starts_with("grpc-") && !matches!(key, "grpc-retry-pushback-ms" | "grpc-previous-rpc-attempts"))
        || matches!(
            key,
            "content-type"
                | "te"
                | "connection"
                | "transfer-encoding"
                | "host"
                | "keep-alive"
                | "upgrade"
                | "proxy-connection"
        )
}

fn validate_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid("metadata key is empty"));
    }
    if let Some(c) = key.bytes().find(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'z' | b'_' | b'.' | b'-')) {
        return Err(Error::invalid(format!(
            "metadata key {key:?} contains an invalid character {:?} (allowed: 0-9 a-z _ . -)",
            c as char
        )));
    }
    if is_reserved(key) {
        return Err(Error::invalid(format!("metadata key {key:?} is reserved")));
    }
    Ok(())
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Appends an ASCII entry. The key must not end with `-bin`; the value
    /// must be printable ASCII (0x20..=0x7E).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), Error> {
        let key = key.into().to_ascii_lowercase();
        validate_key(&key)?;
        if key.ends_with("-bin") {
            return Err(Error::invalid(format!("metadata key {key:?} ends with -bin: use insert_bin")));
        }
        let value = value.into();
        if let Some(c) = value.bytes().find(|c| !(0x20..=0x7e).contains(c)) {
            return Err(Error::invalid(format!("metadata value for {key:?} has a non-printable byte 0x{c:02x}")));
        }
        self.entries.push((key, MetadataValue::Ascii(value)));
        Ok(())
    }

    /// Appends a binary entry; the key must end with `-bin`.
    pub fn insert_bin(&mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Result<(), Error> {
        let key = key.into().to_ascii_lowercase();
        validate_key(&key)?;
        if !key.ends_with("-bin") {
            return Err(Error::invalid(format!("binary metadata key {key:?} must end with -bin")));
        }
        self.entries.push((key, MetadataValue::Binary(value.into())));
        Ok(())
    }

    /// Appends an entry given as raw bytes: binary for `-bin` keys, ASCII otherwise.
    pub fn append_raw(&mut self, key: &str, value: &[u8]) -> Result<(), Error> {
        if key.to_ascii_lowercase().ends_with("-bin") {
            self.insert_bin(key, Bytes::copy_from_slice(value))
        } else {
            let s = std::str::from_utf8(value).map_err(|_| Error::invalid("metadata value is not ASCII"))?;
            self.insert(key, s)
        }
    }

    /// The first ASCII value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_str())
    }

    /// The first binary value for `key`.
    pub fn get_bin(&self, key: &str) -> Option<&Bytes> {
        self.entries.iter().find(|(k, _)| k == key).and_then(|(_, v)| match v {
            MetadataValue::Binary(b) => Some(b),
            _ => None,
        })
    }

    /// Every value for `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a MetadataValue> + 'a {
        self.entries.iter().filter(move |(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes every entry for `key`; returns how many were removed.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        before - self.entries.len()
    }

    /// Iterates over all entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends every entry of `other`.
    pub fn extend(&mut self, other: Metadata) {
        self.entries.extend(other.entries);
    }

    /// Writes the entries into an HTTP/2 header map (binary as unpadded base64).
    pub(crate) fn write_to(&self, headers: &mut HeaderMap) {
        for (k, v) in &self.entries {
            let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else { continue };
            let value = match v {
                MetadataValue::Ascii(s) => HeaderValue::from_str(s),
                MetadataValue::Binary(b) => HeaderValue::from_str(&STANDARD_NO_PAD.encode(b)),
            };
            if let Ok(value) = value {
                headers.append(name, value);
            }
        }
    }

    /// Reads the non-reserved entries of an HTTP/2 header map. Binary values
    /// are decoded padded or unpadded (a comma separates several values);
    /// entries that fail to decode are dropped rather than failing the call.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Metadata {
        let mut md = Metadata::new();
        for (name, value) in headers {
            let key = name.as_str();
            if is_reserved(key) {
                continue;
            }
            if key.ends_with("-bin") {
                for part in value.as_bytes().split(|&b| b == b',') {
                    let part = part.trim_ascii();
                    if let Some(bytes) = decode_base64(part) {
                        md.entries.push((key.to_owned(), MetadataValue::Binary(Bytes::from(bytes))));
                    }
                }
            } else if let Ok(s) = value.to_str() {
                md.entries.push((key.to_owned(), MetadataValue::Ascii(s.to_owned())));
            }
        }
        md
    }
}

/// Decodes base64 with or without padding.
pub(crate) fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    if s.ends_with(b"=") {
        STANDARD.decode(s).ok()
    } else {
        STANDARD_NO_PAD.decode(s).ok()
    }
}

/// Encodes base64 without padding, as gRPC sends `-bin` values.
pub(crate) fn encode_base64(b: &[u8]) -> String {
    STANDARD_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        let mut md = Metadata::new();
        assert!(md.insert("x-ok", "v").is_ok());
        assert!(md.insert("X-Upper", "v").is_ok(), "keys are lower-cased");
        assert_eq!(md.get("x-upper"), Some("v"));
        assert!(md.insert("grpc-status", "0").is_err());
        assert!(md.insert(":path", "/").is_err());
        assert!(md.insert("content-type", "x").is_err());
        assert!(md.insert("te", "x").is_err());
        assert!(md.insert("bad key", "x").is_err());
        assert!(md.insert("x-bin", "x").is_err());
        assert!(md.insert("x-ok", "bad\nvalue").is_err());
        assert!(md.insert_bin("x-bin", vec![0u8, 255]).is_ok());
        assert!(md.insert_bin("x-notbin", vec![0u8]).is_err());
    }

    #[test]
    fn binary_round_trip_and_padding() {
        let mut md = Metadata::new();
        md.insert_bin("k-bin", vec![1u8, 2, 3, 4]).unwrap();
        let mut h = HeaderMap::new();
        md.write_to(&mut h);
        assert_eq!(h.get("k-bin").unwrap(), "AQIDBA", "sent unpadded");
        let mut h2 = HeaderMap::new();
        h2.insert("k-bin", HeaderValue::from_static("AQIDBA=="));
        h2.append("k-bin", HeaderValue::from_static("AQID,BA"));
        h2.insert("grpc-status", HeaderValue::from_static("0"));
        h2.insert("x-a", HeaderValue::from_static("b"));
        let back = Metadata::from_headers(&h2);
        let vals: Vec<_> = back.get_all("k-bin").map(|v| v.as_bytes().to_vec()).collect();
        assert_eq!(vals, vec![vec![1, 2, 3, 4], vec![1, 2, 3], vec![4]]);
        assert_eq!(back.get("x-a"), Some("b"));
        assert!(back.get("grpc-status").is_none(), "reserved headers are not metadata");
    }
}
