//! The shop API's listener, bounded: at most `max_total` connections open at once (further
//! clients wait in the kernel's backlog), at most `max_per_address` from one address (more
//! are closed at once), and a connection that sends nothing for `idle_timeout_ms` is closed,
//! so half-sent requests and idle keep-alives cannot hold file descriptors forever. The
//! admin endpoint has its own listener and stays reachable when the shop's is full.

use agora_cluster_config::ConnectionLimits;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Open connections per address.
type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A `TcpListener` with the shop API's bounds.
pub struct BoundedListener {
    inner: TcpListener,
    total: Arc<Semaphore>,
    per_address: PerAddress,
    limits: ConnectionLimits,
}

impl BoundedListener {
    /// Bounds `inner` by `limits`.
    pub fn new(inner: TcpListener, limits: ConnectionLimits) -> Self {
        assert!(
            limits.max_total > 0 && limits.max_per_address > 0,
            "limits are validated"
        );
        Self {
            inner,
            total: Arc::new(Semaphore::new(limits.max_total)),
            per_address: Arc::default(),
            limits,
        }
    }

    /// Counts a connection from `ip`, unless that address is at its limit.
    fn admit(&self, ip: IpAddr) -> bool {
        let Ok(mut counts) = self.per_address.lock() else {
            return false;
        };
        let n = counts.entry(ip).or_default();
        if *n >= self.limits.max_per_address {
            return false;
        }
        *n += 1;
        true
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Closed only if dropped, which never happens while `self` lives.
            let Ok(permit) = self.total.clone().acquire_owned().await else {
                continue;
            };
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "shop API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !self.admit(addr.ip()) {
                metrics::counter!("agora_http_connections_refused_total").increment(1);
                tracing::debug!(%addr, "connection refused: too many from this address");
                continue;
            }
            metrics::gauge!("agora_http_connections_open").increment(1.0);
            let idle = Duration::from_millis(self.limits.idle_timeout_ms);
            let stream = BoundedStream {
                inner: stream,
                idle,
                deadline: Box::pin(tokio::time::sleep(idle)),
                _permit: permit,
                address: AddressSlot {
                    ip: addr.ip(),
                    counts: self.per_address.clone(),
                },
            };
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Gives the address's slot back when the connection closes.
struct AddressSlot {
    ip: IpAddr,
    counts: PerAddress,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        metrics::gauge!("agora_http_connections_open").decrement(1.0);
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(n) = counts.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// A connection of the shop API: reads fail once the client has sent nothing for the idle
/// time, which closes it; its slots are given back when it is dropped.
pub struct BoundedStream {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
    address: AddressSlot,
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    metrics::counter!("agora_http_connections_idle_closed_total").increment(1);
                    tracing::debug!(ip = %self.address.ip, "idle connection closed");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle")))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
