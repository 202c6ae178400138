//! gRPC message framing (the 5-byte prefix: compressed flag + big-endian
//! length), compression (identity, gzip, deflate, zstd) and size limits.
//!
//! Limits are checked on the 5-byte header before a message is buffered, and
//! again on the decompressed size, so a small compressed bomb cannot expand
//! past the receive limit.

mod compression;
mod parts;
pub(crate) mod pool;
pub use compression::Compression;
pub(crate) use compression::{accept_encoding_header, parse_accept_encoding};
pub use parts::{MessageParts, PartsWriter};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::status::{Code, Status};

/// Default maximum received message size (4 MiB), as in grpc-go and grpc-java.
pub const DEFAULT_MAX_RECV_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default maximum sent message size (unlimited, as in grpc-go).
pub const DEFAULT_MAX_SEND_MESSAGE_SIZE: usize = usize::MAX;

const HEADER_LEN: usize = 5;

/// A received message and whether it arrived compressed on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The (decompressed) message bytes.
    pub data: Bytes,
    /// True if the sender set the compressed flag on this message.
    pub compressed: bool,
    /// The payload's size on the wire (compressed size; the 5-byte prefix excluded).
    pub wire_len: usize,
}

/// Builds one framed message (prefix + payload in one buffer, so it goes out
/// in a single write). `compression` is the call's encoding when this message
/// is to be compressed.
pub(crate) fn encode_frame(msg: &[u8], compression: Option<Compression>, max_send: usize) -> Result<Bytes, Status> {
    let Some(c) = compression.filter(|&c| c != Compression::Identity) else {
        let mut buf = uncompressed_prefix(msg.len(), max_send, msg.len())?;
        buf.extend_from_slice(msg);
        return Ok(buf.freeze());
    };
    if msg.len() > max_send {
        return Err(too_large_to_send(msg.len(), max_send));
    }
    let compressed = c.compress(msg).map_err(|e| Status::internal(format!("grpc: error while compressing: {e}")))?;
    let len = u32::try_from(compressed.len())
        .map_err(|_| Status::resource_exhausted("message larger than 4 GiB cannot be framed"))?;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + compressed.len());
    buf.put_u8(1);
    buf.put_u32(len);
    buf.extend_from_slice(&compressed);
    Ok(buf.freeze())
}

/// Messages at least this large are sent as the 5-byte prefix plus the
/// caller's buffer (two DATA frames, no copy); smaller ones are copied into
/// one buffer so prefix and payload go out as one frame.
pub(crate) const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

/// Frames a message: `(prefix_and_maybe_payload, Some(payload))` for large
/// uncompressed messages (not copied), `(whole_frame, None)` otherwise.
pub(crate) fn frame_parts(
    msg: Bytes,
    compression: Option<Compression>,
    max_send: usize,
) -> Result<(Bytes, Option<Bytes>), Status> {
    let compressed = matches!(compression, Some(c) if c != Compression::Identity);
    if compressed || msg.len() < ZERO_COPY_THRESHOLD {
        return encode_frame(&msg, compression, max_send).map(|f| (f, None));
    }
    Ok((uncompressed_prefix(msg.len(), max_send, 0)?.freeze(), Some(msg)))
}

/// The 5-byte prefix of an uncompressed `n`-byte message, with room for
/// `extra` more bytes; checks the send limit and the 4 GiB frame limit.
fn uncompressed_prefix(n: usize, max_send: usize, extra: usize) -> Result<BytesMut, Status> {
    if n > max_send {
        return Err(too_large_to_send(n, max_send));
    }
    let len = u32::try_from(n).map_err(|_| Status::resource_exhausted("message larger than 4 GiB cannot be framed"))?;
    let mut head = BytesMut::with_capacity(HEADER_LEN + extra);
    head.put_u8(0);
    head.put_u32(len);
    Ok(head)
}

/// Frames an uncompressed message of several segments: the 5-byte prefix
/// with the first segment copied in when it is small, then the segments as
/// they are (none copied).
pub(crate) fn frame_segments(msg: MessageParts, max_send: usize) -> Result<(Bytes, Vec<Bytes>), Status> {
    let n = msg.len();
    let (first, mut rest) = msg.into_segments();
    let small = first.len() < ZERO_COPY_THRESHOLD;
    let mut head = uncompressed_prefix(n, max_send, if small { first.len() } else { 0 })?;
    if small {
        head.extend_from_slice(&first);
    } else {
        rest.insert(0, first);
    }
    Ok((head.freeze(), rest))
}

/// The payload size on the wire of a frame from [`frame_parts`] (compressed
/// size, the 5-byte prefix excluded).
pub(crate) fn wire_len(head: &Bytes, body: &Option<Bytes>) -> usize {
    head.len() + body.as_ref().map_or(0, Bytes::len) - HEADER_LEN
}

fn too_large_to_send(len: usize, max: usize) -> Status {
    Status::new(Code::ResourceExhausted, format!("grpc: trying to send message larger than max ({len} vs. {max})"))
}

/// Incremental decoder: feed DATA chunks, take whole messages out.
#[derive(Debug)]
pub(crate) struct Decoder {
    chunks: std::collections::VecDeque<Bytes>,
    /// Total bytes in `chunks`.
    queued: usize,
    max_recv: usize,
    encoding: Option<Compression>,
    /// Length of the message whose header has been read but whose body has not fully arrived.
    pending: Option<(bool, usize)>,
}

impl Decoder {
    pub(crate) fn new(max_recv: usize, encoding: Option<Compression>) -> Decoder {
        Decoder { chunks: Default::default(), queued: 0, max_recv, encoding, pending: None }
    }

    pub(crate) fn set_encoding(&mut self, encoding: Option<Compression>) {
        self.encoding = encoding;
    }

    /// Adds a DATA chunk.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queued += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    fn buffered(&self) -> usize {
        self.queued
    }

    /// Takes exactly `n` bytes from the chunk queue, without copying when one
    /// chunk holds them; otherwise they are copied into one buffer (the
    /// thread's spare for large messages, see `pool`).
    fn take(&mut self, n: usize) -> Bytes {
        debug_assert!(n <= self.queued, "caller checked buffered()");
        self.queued -= n;
        if let Some(front) = self.chunks.front_mut() {
            if front.len() > n {
                return front.split_to(n);
            }
            if front.len() == n {
                // The usual case (a message per DATA frame): the chunk itself,
                // without a reference count taken and dropped.
                return self.chunks.pop_front().expect("front exists");
            }
        }
        let mut buf = pool::buffer(n);
        while buf.len() < n {
            let mut front = self.chunks.pop_front().expect("caller checked buffered()");
            let need = n - buf.len();
            if front.len() > need {
                buf.extend_from_slice(&front.split_to(need));
                self.chunks.push_front(front);
            } else {
                buf.extend_from_slice(&front);
            }
        }
        pool::split_message(buf, n)
    }

    /// Reads and consumes the 5-byte prefix (copied out: no `Bytes` is cut
    /// for it).
    fn take_header(&mut self) -> [u8; HEADER_LEN] {
        debug_assert!(HEADER_LEN <= self.queued, "caller checked buffered()");
        self.queued -= HEADER_LEN;
        let mut h = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            let front = self.chunks.front_mut().expect("caller checked buffered()");
            let n = front.len().min(HEADER_LEN - filled);
            h[filled..filled + n].copy_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            filled += n;
        }
        h
    }

    /// The next whole message, if buffered. Errors: a reserved flag bit, a
    /// compressed flag with no encoding (INTERNAL), a message over the limit
    /// (RESOURCE_EXHAUSTED, decided on the header alone).
    pub(crate) fn next(&mut self) -> Result<Option<Received>, Status> {
        let (compressed, len) = match self.pending {
            Some(p) => p,
            None => {
                if self.buffered() < HEADER_LEN {
                    return Ok(None);
                }
                let h = self.take_header();
                let flag = h[0];
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                let compressed = match flag {
                    0 => false,
                    1 => true,
                    f => {
                        return Err(Status::internal(format!(
                            "grpc: received message with invalid compression flag {f} (reserved bits set)"
                        )))
                    }
                };
                if len > self.max_recv {
                    return Err(Status::resource_exhausted(format!(
                        "grpc: received message larger than max ({len} vs. {})",
                        self.max_recv
                    )));
                }
                if compressed && matches!(self.encoding, None | Some(Compression::Identity)) {
                    return Err(Status::internal("grpc: compressed flag set with identity or empty encoding"));
                }
                self.pending = Some((compressed, len));
                (compressed, len)
            }
        };
        if self.buffered() < len {
            return Ok(None);
        }
        self.pending = None;
        let payload = self.take(len);
        let data = if compressed {
            let c = self.encoding.expect("checked on the header");
            c.decompress(&payload, self.max_recv)?
        } else {
            payload
        };
        Ok(Some(Received { data, compressed, wire_len: len }))
    }

    /// Called at end of stream: leftover bytes mean a message was cut short.
    pub(crate) fn finish(&self) -> Result<(), Status> {
        if self.pending.is_some() || self.buffered() > 0 {
            return Err(Status::internal("grpc: end of stream in the middle of a message (unexpected EOF)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, payload: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(flag);
        b.put_u32(payload.len() as u32);
        b.extend_from_slice(payload);
        b.freeze()
    }

    #[test]
    fn decodes_split_and_joined_frames() {
        let mut d = Decoder::new(100, None);
        let mut all = BytesMut::new();
        all.extend_from_slice(&frame(0, b"hello"));
        all.extend_from_slice(&frame(0, b""));
        all.extend_from_slice(&frame(0, b"world!"));
        let all = all.freeze();
        for i in 0..all.len() {
            d.push(all.slice(i..i + 1));
        }
        assert_eq!(d.next().unwrap().unwrap().data, "hello");
        assert_eq!(d.next().unwrap().unwrap().data, "");
        assert_eq!(d.next().unwrap().unwrap().data, "world!");
        assert!(d.next().unwrap().is_none());
        d.finish().unwrap();
    }

    #[test]
    fn rejects_bad_frames() {
        let mut d = Decoder::new(4, None);
        d.push(frame(0, b"hello"));
        assert_eq!(d.next().unwrap_err().code(), Code::ResourceExhausted);

        let mut d = Decoder::new(100, None);
        d.push(frame(2, b"x"));
        assert_eq!(d.next().unwrap_err().code(), Code::Internal);

        let mut d = Decoder::new(100, None);
        d.push(frame(1, b"x"));
        assert_eq!(d.next().unwrap_err().code(), Code::Internal);

        let mut d = Decoder::new(100, None);
        d.push(frame(0, b"hello").slice(0..7));
        assert!(d.next().unwrap().is_none());
        assert_eq!(d.finish().unwrap_err().code(), Code::Internal);
    }

    #[test]
    fn compressed_round_trip_and_bomb_limit() {
        for c in [Compression::Gzip, Compression::Deflate, Compression::Zstd] {
            let msg = vec![7u8; 10_000];
            let f = encode_frame(&msg, Some(c), usize::MAX).unwrap();
            assert_eq!(f[0], 1);
            assert!(f.len() < 1000);
            let mut d = Decoder::new(20_000, Some(c));
            d.push(f.clone());
            let r = d.next().unwrap().unwrap();
            assert!(r.compressed);
            assert_eq!(r.data, msg);
            let mut d = Decoder::new(5_000, Some(c));
            d.push(f);
            assert_eq!(d.next().unwrap_err().code(), Code::ResourceExhausted, "{c:?} decompressed size is limited");
        }
    }

    #[test]
    fn large_messages_are_framed_without_copy() {
        let msg = Bytes::from(vec![9u8; 100_000]);
        let (head, body) = frame_parts(msg.clone(), None, usize::MAX).unwrap();
        assert_eq!(&head[..], &[0, 0, 1, 0x86, 0xa0]);
        let body = body.unwrap();
        assert_eq!(body.as_ptr(), msg.as_ptr(), "payload is the caller's buffer");
        let mut d = Decoder::new(usize::MAX, None);
        d.push(head);
        d.push(body.slice(..50_000));
        d.push(body.slice(50_000..));
        assert_eq!(d.next().unwrap().unwrap().data, msg);
        let (small, none) = frame_parts(Bytes::from_static(b"abc"), None, usize::MAX).unwrap();
        assert!(none.is_none());
        assert_eq!(&small[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(frame_parts(msg, None, 10).unwrap_err().code(), Code::ResourceExhausted);
    }

    #[test]
    fn send_limit() {
        assert_eq!(encode_frame(b"12345", None, 4).unwrap_err().code(), Code::ResourceExhausted);
        assert_eq!(encode_frame(b"1234", None, 4).unwrap().len(), 9);
    }
}
