//! A message to send as several byte segments, so large `bytes` fields that
//! the application already holds as [`Bytes`] go to the socket without being
//! copied into an encode buffer (see [`crate::typed::encode_parts`]).

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};

// Segments at least this large are kept as the caller's buffer; smaller
// writes are copied together (a separate DATA frame per tiny piece costs
// more than the copy): the size from which a whole message is sent without
// a copy too.
use super::ZERO_COPY_THRESHOLD as SEGMENT_MIN;

/// One serialized message as consecutive segments; sent as if concatenated.
///
/// Built by [`crate::typed::encode_parts`] or by hand (`push`); sent with
/// `ServerCall::send_parts`. A message of one segment is just that
/// [`Bytes`], so `From<Bytes>` and [`MessageParts::into_bytes`] cost nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageParts {
    first: Bytes,
    rest: Vec<Bytes>,
    len: usize,
}

impl MessageParts {
    /// An empty message.
    pub fn new() -> MessageParts {
        MessageParts::default()
    }

    /// Appends a segment (empty ones are skipped).
    pub fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len();
        if self.first.is_empty() {
            self.first = b;
        } else {
            self.rest.push(b);
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments in order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.first).filter(|b| !b.is_empty()).chain(&self.rest)
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        usize::from(!self.first.is_empty()) + self.rest.len()
    }

    /// The message in one buffer: no copy if it is one segment.
    pub fn into_bytes(self) -> Bytes {
        if self.rest.is_empty() {
            return self.first;
        }
        let mut b = BytesMut::with_capacity(self.len);
        for s in self.iter() {
            b.extend_from_slice(s);
        }
        b.freeze()
    }

    /// Splits into the first segment and the others.
    pub(crate) fn into_segments(self) -> (Bytes, Vec<Bytes>) {
        (self.first, self.rest)
    }
}

impl From<Bytes> for MessageParts {
    fn from(b: Bytes) -> MessageParts {
        let mut p = MessageParts::new();
        p.push(b);
        p
    }
}

/// The [`BufMut`] that [`crate::typed::encode_parts_with`] fills: small
/// writes go into one buffer, and a `put` of at least 16 KiB from a
/// [`Buf`] takes that buffer's own bytes with [`Buf::copy_to_bytes`], which
/// for [`Bytes`] (prost's `bytes = "bytes"` fields) is a reference, not a
/// copy. Other large `Buf`s (`&[u8]`, so `Vec<u8>` fields) are copied into a
/// separate allocation by `copy_to_bytes`; encode those messages with
/// `typed::encode` instead.
#[derive(Debug)]
pub struct PartsWriter {
    cur: BytesMut,
    parts: MessageParts,
}

impl PartsWriter {
    pub(crate) fn new(cur: BytesMut) -> PartsWriter {
        PartsWriter { cur, parts: MessageParts::new() }
    }

    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.parts.push(self.cur.split().freeze());
        }
    }

    /// The message. With no segment taken by reference it is the buffer
    /// whole (split off as `typed::encode_with` does); otherwise the buffer's
    /// rest goes back to the thread's spare (`pool`).
    pub(crate) fn finish(mut self) -> MessageParts {
        if self.parts.is_empty() {
            let n = self.cur.len();
            return MessageParts::from(crate::codec::pool::split_message(self.cur, n));
        }
        self.flush();
        crate::codec::pool::give_back(self.cur);
        self.parts
    }
}

// SAFETY: every method forwards to the inner `BytesMut`, whose `BufMut`
// implementation upholds the contract; `put` only appends whole segments.
unsafe impl BufMut for PartsWriter {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialized `cnt` bytes of `chunk_mut()`, which is `cur`'s.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put<T: Buf>(&mut self, mut src: T)
    where
        Self: Sized,
    {
        let n = src.remaining();
        if n >= SEGMENT_MIN {
            self.flush();
            self.parts.push(src.copy_to_bytes(n));
        } else {
            self.cur.put(src);
        }
    }

    fn put_slice(&mut self, src: &[u8]) {
        self.cur.put_slice(src);
    }
}
