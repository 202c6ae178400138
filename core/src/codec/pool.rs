//! One spare buffer per thread for large messages.
//!
//! A received message that spans several DATA frames is copied into one
//! contiguous buffer, and a typed message is encoded into one. Allocating a
//! fresh multi-megabyte buffer for each message costs more than the copy
//! itself: glibc hands such blocks back to the kernel when they are freed
//! (trim / munmap), so every message pays one page fault per 4 KiB touched.
//! Instead each thread keeps the buffer of its last large message and takes
//! it back once every `Bytes` handed out of it has been dropped
//! (`BytesMut::reserve` reclaims a uniquely owned allocation). While the
//! application still holds the previous message, a new buffer is allocated
//! as before, so nothing is ever overwritten.
//!
//! Only messages from [`POOL_MIN`] to [`POOL_MAX`] bytes use the spare; a
//! thread therefore retains at most `POOL_MAX` bytes, and only if it has
//! handled a message that large.

use std::cell::Cell;

use bytes::BytesMut;

/// Messages smaller than this are allocated directly (malloc keeps such blocks).
pub(crate) const POOL_MIN: usize = 64 * 1024;
/// Messages larger than this are allocated directly, so the spare never holds more.
pub(crate) const POOL_MAX: usize = 32 * 1024 * 1024;

thread_local! {
    static SPARE: Cell<Option<BytesMut>> = const { Cell::new(None) };
}

/// An empty buffer with room for at least `n` bytes: this thread's spare
/// when it is free and large enough, else a new allocation.
pub(crate) fn buffer(n: usize) -> BytesMut {
    if !(POOL_MIN..=POOL_MAX).contains(&n) {
        return BytesMut::with_capacity(n);
    }
    let mut b = SPARE.try_with(Cell::take).ok().flatten().unwrap_or_default();
    b.clear();
    b.reserve(n);
    b
}

/// Splits the first `n` bytes off `buf` as the message and keeps the rest
/// (which still owns the allocation) as this thread's spare.
pub(crate) fn split_message(mut buf: BytesMut, n: usize) -> bytes::Bytes {
    let out = buf.split_to(n).freeze();
    if (POOL_MIN..=POOL_MAX).contains(&n) {
        let _ = SPARE.try_with(|s| s.set(Some(buf)));
    }
    out
}

/// Keeps `buf` (whose filled part has been split off) as this thread's spare
/// if its room is pool-sized.
pub(crate) fn give_back(buf: BytesMut) {
    if (POOL_MIN..=POOL_MAX).contains(&buf.capacity()) {
        let _ = SPARE.try_with(|s| s.set(Some(buf)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_is_reused_only_once_released() {
        let n = 1 << 20;
        let mut b = buffer(n);
        b.resize(n, 1);
        let first = split_message(b, n);
        let first_ptr = first.as_ptr();
        // Still held: the next buffer must not overwrite it.
        let mut b = buffer(n);
        b.resize(n, 2);
        let second = split_message(b, n);
        assert_ne!(second.as_ptr(), first_ptr);
        assert!(first.iter().all(|&x| x == 1), "the held message is intact");
        let second_ptr = second.as_ptr();
        drop(first);
        drop(second);
        // Released: the spare's allocation comes back.
        let mut b = buffer(n);
        b.resize(n, 3);
        let third = split_message(b, n);
        assert_eq!(third.as_ptr(), second_ptr, "the released buffer is reused");
        assert!(third.iter().all(|&x| x == 3));
        // Small and huge messages bypass the spare.
        assert!(buffer(10).capacity() >= 10);
    }
}
