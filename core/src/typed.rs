//! Typed use from Rust: prost messages over the byte-level API.

use std::future::Future;

use bytes::Bytes;

use crate::client::{CallOptions, Channel};
use crate::codec::{MessageParts, PartsWriter};
use crate::metadata::Metadata;
use crate::server::{Handler, ServerCall};
use crate::status::Status;

/// Serializes a message. Large messages (64 KiB to 32 MiB) are encoded into
/// the thread's recycled buffer instead of a fresh allocation (see
/// `codec::pool`), which saves the page faults of a new multi-megabyte block.
pub fn encode<M: prost::Message>(m: &M) -> Bytes {
    encode_with(m.encoded_len(), |buf| m.encode_raw(buf))
}

/// Builds a message of exactly `len` bytes with `fill` (which must append
/// `len` bytes), in the same recycled buffer as [`encode`]. For encoders
/// other than this crate's prost version, e.g.
/// `encode_with(m.encoded_len(), |b| m.encode_raw(b))` with another prost.
///
/// # Panics
/// If `fill` does not append exactly `len` bytes.
pub fn encode_with(len: usize, fill: impl FnOnce(&mut bytes::BytesMut)) -> Bytes {
    let mut buf = crate::codec::pool::buffer(len);
    fill(&mut buf);
    assert_eq!(buf.len(), len, "encode_with: bytes written vs announced");
    crate::codec::pool::split_message(buf, len)
}

/// Serializes a message as segments: its `bytes` fields of 16 KiB or more
/// that are [`Bytes`] (prost-build's `.bytes(..)`) are referenced, not
/// copied; the rest is encoded into one recycled buffer as [`encode`] does.
/// Sent with `ServerCall::send_parts`, an echo of a received large field
/// reaches the socket without a copy. Large `Vec<u8>` fields are copied once
/// more than with [`encode`] (see [`PartsWriter`]).
pub fn encode_parts<M: prost::Message>(m: &M) -> MessageParts {
    encode_parts_with(m.encoded_len(), |buf| m.encode_raw(buf))
}

/// [`encode_parts`] for any encoder: `fill` appends `len` bytes to the writer,
/// e.g. `encode_parts_with(m.encoded_len(), |b| m.encode_raw(b))` with
/// another prost version.
///
/// # Panics
/// If `fill` does not append exactly `len` bytes.
pub fn encode_parts_with(len: usize, fill: impl FnOnce(&mut PartsWriter)) -> MessageParts {
    let mut w = PartsWriter::new(crate::codec::pool::buffer(len));
    fill(&mut w);
    let parts = w.finish();
    assert_eq!(parts.len(), len, "encode_parts_with: bytes written vs announced");
    parts
}

/// Parses a message; failure is INTERNAL, as in grpc-go.
pub fn decode<M: prost::Message + Default>(b: &[u8]) -> Result<M, Status> {
    decode_buf(b)
}

/// Parses a received message without copying its `bytes` fields when the
/// message type stores them as [`Bytes`] (prost-build's `.bytes(..)`): they
/// are cut from the received buffer. [`decode`] from a slice copies them.
pub fn decode_bytes<M: prost::Message + Default>(b: Bytes) -> Result<M, Status> {
    decode_buf(b)
}

fn decode_buf<M: prost::Message + Default>(b: impl bytes::Buf) -> Result<M, Status> {
    M::decode(b).map_err(|e| Status::internal(format!("grpc: failed to unmarshal the received message: {e}")))
}

/// Receives and parses the one request of a unary or server-streaming call.
pub async fn recv_one<M: prost::Message + Default>(call: &mut ServerCall) -> Result<M, Status> {
    match call.recv().await? {
        Some(b) => decode_bytes(b),
        None => Err(Status::internal("no request message")),
    }
}

/// A typed unary call.
pub async fn unary<Req, Resp>(channel: &Channel, method: &str, req: &Req, opts: CallOptions) -> Result<Resp, Status>
where
    Req: prost::Message,
    Resp: prost::Message + Default,
{
    let r = channel.unary(method, encode(req), opts).await?;
    decode_bytes(r.message)
}

/// Wraps an `async fn(Req, Metadata) -> Result<Resp, Status>` as a unary handler.
pub fn unary_handler<Req, Resp, F, Fut>(f: F) -> impl Handler
where
    Req: prost::Message + Default + 'static,
    Resp: prost::Message + 'static,
    F: Fn(Req, Metadata) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let f = std::sync::Arc::new(f);
    move |mut call: ServerCall| {
        let f = f.clone();
        async move {
            let req: Req = match recv_one(&mut call).await {
                Ok(r) => r,
                Err(s) => return s,
            };
            match f(req, call.metadata().clone()).await {
                Ok(resp) => match call.send_parts(encode_parts(&resp)).await {
                    Ok(()) => Status::ok(),
                    Err(s) => s,
                },
                Err(s) => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Blob {
        #[prost(bytes = "bytes", tag = "1")]
        data: Bytes,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Mixed {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(bytes = "bytes", tag = "2")]
        big: Bytes,
        #[prost(bytes = "vec", tag = "3")]
        vec: Vec<u8>,
        #[prost(message, optional, tag = "4")]
        inner: Option<Blob>,
    }

    #[test]
    fn encode_parts_references_large_bytes_fields() {
        let big = Bytes::from(vec![1u8; 100_000]);
        let nested = Bytes::from(vec![2u8; 20_000]);
        let m = Mixed {
            name: "n".into(),
            big: big.clone(),
            vec: vec![3; 50_000],
            inner: Some(Blob { data: nested.clone() }),
        };
        let parts = encode_parts(&m);
        assert_eq!(parts.len(), prost::Message::encoded_len(&m));
        assert_eq!(parts.clone().into_bytes(), encode(&m), "same bytes as one buffer");
        let ptrs: Vec<*const u8> = parts.iter().map(|b| b.as_ptr()).collect();
        assert!(ptrs.contains(&big.as_ptr()), "the Bytes field is referenced");
        assert!(ptrs.contains(&nested.as_ptr()), "so is a nested message's");
        // name+tag | big | tag+len | vec (copied by copy_to_bytes) | inner's tags | nested
        assert_eq!(parts.segments(), 6);
        // A message without large fields is one segment from the recycled buffer.
        let small = encode_parts(&Mixed { name: "x".into(), big: Bytes::from_static(b"abc"), ..Default::default() });
        assert_eq!(small.segments(), 1);
        assert_eq!(
            small.into_bytes(),
            encode(&Mixed { name: "x".into(), big: Bytes::from_static(b"abc"), ..Default::default() })
        );
        assert!(encode_parts(&Mixed::default()).is_empty());
    }

    #[test]
    fn decode_bytes_does_not_copy_bytes_fields() {
        let wire = encode(&Blob { data: Bytes::from(vec![7u8; 100_000]) });
        let by_slice: Blob = decode(&wire).unwrap();
        let owned: Blob = decode_bytes(wire.clone()).unwrap();
        assert_eq!(owned, by_slice);
        let inside = wire.as_ptr_range();
        assert!(inside.contains(&owned.data.as_ptr()), "cut from the received buffer");
        assert!(!inside.contains(&by_slice.data.as_ptr()));
    }
}
