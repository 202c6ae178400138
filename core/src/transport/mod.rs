//! TCP / Unix-socket connectors and listeners, rustls client and server
//! configuration (ALPN `h2`), and the HTTP/2 settings both sides use.

pub(crate) mod pingwatch;
pub(crate) mod tls;
pub use tls::{ClientTlsConfig, ServerTlsConfig};

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Default HTTP/2 stream flow-control window (the 64 KiB protocol default
/// starves large messages).
pub const DEFAULT_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Default HTTP/2 connection flow-control window.
pub const DEFAULT_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Default max header list size we accept (16 KiB, grpc-java's is 8 KiB, grpc-go's 16 MiB).
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Default HTTP/2 max frame size we accept: the stream window, so a message
/// within the default receive limit (4 MiB) can arrive in one DATA frame and
/// reach the application without being copied.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 4 * 1024 * 1024;

/// How much of a stream's outgoing DATA h2 may hold (slices of the caller's
/// messages, not copies) before a send waits. As large as the stream window,
/// a message within it goes out as one DATA frame (when the peer's max frame
/// size allows), which our receiver takes without a copy; at 1 MiB a 1 MiB
/// message left as two frames (1 MiB minus its 5-byte prefix, then 5 bytes).
pub(crate) const MAX_SEND_BUFFER_SIZE: usize = DEFAULT_STREAM_WINDOW as usize;

/// A resolved address to connect to or listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// TCP over IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A byte stream h2 runs over: plain TCP, Unix socket, or TLS over either.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub(crate) struct BoxIo(pub(crate) Box<dyn Io>);

impl std::fmt::Debug for BoxIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxIo")
    }
}

impl AsyncRead for BoxIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Opens a connection (TCP with TCP_NODELAY, or a Unix socket) and runs the
/// TLS handshake when `tls` is given.
pub(crate) async fn connect(addr: &Address, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> io::Result<BoxIo> {
    let io: Box<dyn Io> = match addr {
        Address::Tcp(a) => {
            let s = TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            wrap_client_tls(s, tls).await?
        }
        Address::Unix(p) => {
            let s = UnixStream::connect(p).await?;
            wrap_client_tls(s, tls).await?
        }
    };
    Ok(BoxIo(io))
}

async fn wrap_client_tls<S: Io>(s: S, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> io::Result<Box<dyn Io>> {
    let Some((config, server_name)) = tls else { return Ok(Box::new(s)) };
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("invalid TLS server name {server_name:?}: {e}"))
    })?;
    let stream = tokio_rustls::TlsConnector::from(config.clone()).connect(name, s).await?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS peer did not negotiate ALPN h2"));
    }
    Ok(Box::new(stream))
}

/// A bound listener (TCP or Unix).
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    /// Binds and listens; the socket is registered with the runtime this
    /// thread is in (enter the one that will accept on it).
    pub(crate) fn bind(addr: &Address) -> io::Result<Listener> {
        match addr {
            Address::Tcp(a) => {
                let sock =
                    if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
                sock.set_reuseaddr(true)?;
                sock.bind(*a)?;
                Ok(Listener::Tcp(sock.listen(1024)?))
            }
            Address::Unix(p) => {
                // A stale socket file from an earlier run would make bind fail.
                if let Ok(meta) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(p);
                    }
                }
                Ok(Listener::Unix(tokio::net::UnixListener::bind(p)?, p.clone()))
            }
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        match self {
            Listener::Tcp(l) => Ok(Address::Tcp(l.local_addr()?)),
            Listener::Unix(_, p) => Ok(Address::Unix(p.clone())),
        }
    }

    /// Accepts one connection; returns it and the peer's description.
    pub(crate) async fn accept(&self) -> io::Result<(Box<dyn Io>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Unix(l, p) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), format!("unix:{}", p.display())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}
