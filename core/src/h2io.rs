//! Writing DATA to an h2 stream with back-pressure: the message goes out as
//! soon as the flow-control window allows, and the writer waits otherwise.

use std::future::{poll_fn, Future};
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::SendStream;

/// Why a write could not finish.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The stream is gone (reset, closed, or never opened).
    Closed,
    /// h2 reported an error (RST_STREAM, GOAWAY, I/O).
    H2(h2::Error),
}

/// Sends `data` (then END_STREAM if `end`) as far as the flow-control
/// window allows, taking what was sent off `data`; ready once all of it is
/// handed to h2 (at once when `data` is already empty).
fn poll_send(
    s: &mut SendStream<Bytes>,
    data: &mut Bytes,
    end: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<(), WriteError>> {
    loop {
        if data.is_empty() {
            if end {
                s.send_data(Bytes::new(), true).map_err(WriteError::H2)?;
            }
            return Poll::Ready(Ok(()));
        }
        let mut cap = s.capacity();
        if cap == 0 {
            s.reserve_capacity(data.len());
            cap = s.capacity();
            if cap == 0 {
                match s.poll_capacity(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => return Poll::Ready(Err(WriteError::Closed)),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(WriteError::H2(e))),
                    Poll::Ready(Some(Ok(n))) => cap = n,
                }
                if cap == 0 {
                    continue;
                }
            }
        }
        let chunk = if cap >= data.len() { std::mem::take(data) } else { data.split_to(cap) };
        let last = data.is_empty();
        s.send_data(chunk, end && last).map_err(WriteError::H2)?;
        if last {
            return Poll::Ready(Ok(()));
        }
    }
}

/// Largest first message handed to h2 without waiting for window
/// capacity (below the 65,535-byte initial window every peer grants).
const EAGER_MAX: usize = 16 * 1024;

/// Writes a framed message given as prefix (+ optional payload), then
/// END_STREAM if `end`.
///
/// `eager`: the stream's first write. A new client stream has no send
/// capacity until the connection task has sent its HEADERS, so waiting for
/// capacity would make a small request go out in a second write (and a
/// second syscall) after the headers. The first message, if small, is
/// handed to h2 at once instead: h2 buffers it within the initial window
/// and flushes it with the headers. Only one message is ever sent that way,
/// so back-pressure is unchanged.
///
/// A plain function returning one `poll_fn` (no `async fn` around it, no
/// `async fn` per part): the future holds the two parts once, and it is
/// moved into the caller's state on every send.
pub(crate) fn write_parts(
    slot: &Mutex<Option<SendStream<Bytes>>>,
    mut head: Bytes,
    mut body: Option<Bytes>,
    end: bool,
    eager: bool,
) -> impl Future<Output = Result<(), WriteError>> + Send + '_ {
    let eager = eager && head.len() + body.as_ref().map_or(0, Bytes::len) <= EAGER_MAX;
    poll_fn(move |cx| {
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        let s = guard.as_mut().ok_or(WriteError::Closed)?;
        if eager {
            let head = std::mem::take(&mut head);
            return Poll::Ready(match body.take() {
                None => s.send_data(head, end).map_err(WriteError::H2),
                Some(body) => {
                    s.send_data(head, false).map_err(WriteError::H2)?;
                    s.send_data(body, end).map_err(WriteError::H2)
                }
            });
        }
        match &mut body {
            None => poll_send(s, &mut head, end, cx),
            Some(body) => {
                ready!(poll_send(s, &mut head, false, cx))?;
                poll_send(s, body, end, cx)
            }
        }
    })
}
