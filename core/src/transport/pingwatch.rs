//! Keepalive enforcement for servers (grpc-go's EnforcementPolicy). h2 answers
//! PINGs itself and does not tell us about them, so this wrapper scans the
//! HTTP/2 frame headers flowing through the connection: a client that pings
//! more often than `min_time` (or at all without calls, unless permitted)
//! collects strikes, and after more than two the server sends GOAWAY
//! ENHANCE_YOUR_CALM. Sending HEADERS or DATA clears the strikes, as in grpc-go.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const MAX_PING_STRIKES: u32 = 2;
/// Without calls (and without permission) one ping per 2 hours is allowed.
const IDLE_PING_INTERVAL: Duration = Duration::from_secs(2 * 3600);
const FRAME_DATA: u8 = 0;
const FRAME_HEADERS: u8 = 1;
const FRAME_PING: u8 = 6;
const FLAG_ACK: u8 = 1;

/// Finds frame boundaries in a byte stream without buffering payloads.
#[derive(Debug)]
struct FrameScanner {
    preface_left: usize,
    header: [u8; 9],
    have: usize,
    skip: usize,
}

impl FrameScanner {
    fn new(preface: usize) -> FrameScanner {
        FrameScanner { preface_left: preface, header: [0; 9], have: 0, skip: 0 }
    }

    fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(u8, u8)) {
        while !data.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                self.preface_left -= n;
                data = &data[n..];
            } else if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            } else {
                let n = (9 - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have == 9 {
                    let h = &self.header;
                    self.skip = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                    self.have = 0;
                    on_frame(h[3], h[4]);
                }
            }
        }
    }
}

/// The policy and its state for one connection.
#[derive(Debug)]
pub(crate) struct PingPolicy {
    min_time: Duration,
    permit_without_calls: bool,
    pub(crate) active_calls: AtomicUsize,
    reset_strikes: AtomicBool,
    state: Mutex<(Option<Instant>, u32)>,
    violated: AtomicBool,
    pub(crate) notify: Notify,
}

impl PingPolicy {
    pub(crate) fn new(min_time: Duration, permit_without_calls: bool) -> Arc<PingPolicy> {
        Arc::new(PingPolicy {
            min_time,
            permit_without_calls,
            active_calls: AtomicUsize::new(0),
            reset_strikes: AtomicBool::new(false),
            state: Mutex::new((None, 0)),
            violated: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    #[cfg(test)]
    pub(crate) fn violated(&self) -> bool {
        self.violated.load(Ordering::Acquire)
    }

    fn on_ping(&self) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let last = st.0.replace(now);
        if self.reset_strikes.swap(false, Ordering::AcqRel) {
            st.1 = 0;
            return;
        }
        let allowed = if self.active_calls.load(Ordering::Relaxed) == 0 && !self.permit_without_calls {
            IDLE_PING_INTERVAL
        } else {
            self.min_time
        };
        if last.is_some_and(|l| l + allowed > now) {
            st.1 += 1;
        }
        if st.1 > MAX_PING_STRIKES && !self.violated.swap(true, Ordering::AcqRel) {
            tracing::debug!("client sent too many pings; closing with ENHANCE_YOUR_CALM");
            self.notify.notify_one();
        }
    }
}

/// Wraps a server connection's plaintext stream and feeds the policy.
pub(crate) struct PingWatch<T> {
    io: T,
    policy: Arc<PingPolicy>,
    read: FrameScanner,
    write: FrameScanner,
}

impl<T> PingWatch<T> {
    pub(crate) fn new(io: T, policy: Arc<PingPolicy>) -> PingWatch<T> {
        // The client sends the 24-byte connection preface first; the server does not.
        PingWatch { io, policy, read: FrameScanner::new(24), write: FrameScanner::new(0) }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PingWatch<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let this = &mut *self;
            let policy = &this.policy;
            this.read.feed(&buf.filled()[before..], |ty, flags| {
                if ty == FRAME_PING && flags & FLAG_ACK == 0 {
                    policy.on_ping();
                }
            });
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> PingWatch<T> {
    fn scan_written(&mut self, bufs: &[&[u8]], mut n: usize) {
        let policy = &self.policy;
        for b in bufs {
            if n == 0 {
                break;
            }
            let k = n.min(b.len());
            self.write.feed(&b[..k], |ty, _| {
                if ty == FRAME_DATA || ty == FRAME_HEADERS {
                    policy.reset_strikes.store(true, Ordering::Release);
                }
            });
            n -= k;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PingWatch<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.scan_written(&[buf], n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
            self.scan_written(&slices, n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_frames_across_splits() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS (len 0), PING (len 8), DATA (len 3)
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        bytes.extend_from_slice(&[0, 0, 3, 0, 1, 0, 0, 0, 1, b'a', b'b', b'c']);
        for split in 1..bytes.len() {
            let mut s = FrameScanner::new(24);
            let mut seen = vec![];
            s.feed(&bytes[..split], |t, f| seen.push((t, f)));
            s.feed(&bytes[split..], |t, f| seen.push((t, f)));
            assert_eq!(seen, vec![(4, 0), (6, 0), (0, 1)], "split at {split}");
        }
    }

    #[test]
    fn strikes_then_violation() {
        let p = PingPolicy::new(Duration::from_secs(300), false);
        p.active_calls.store(1, Ordering::Relaxed);
        for _ in 0..3 {
            p.on_ping();
            assert!(!p.violated());
        }
        p.on_ping();
        assert!(p.violated(), "the third strike (fourth ping) violates");
        let q = PingPolicy::new(Duration::from_secs(300), false);
        q.active_calls.store(1, Ordering::Relaxed);
        for _ in 0..10 {
            q.reset_strikes.store(true, Ordering::Release);
            q.on_ping();
        }
        assert!(!q.violated(), "data between pings clears strikes");
    }
}
