//! The read half of a cluster connection, guarded: it parses ractor_cluster's framing (a
//! u64 big-endian length, then that many bytes of protobuf) and fails the read, which closes
//! the connection, when a frame is longer than allowed, or when the peer has not
//! authenticated by the handshake deadline. Before authentication a frame may be at most
//! the handshake limit; a longer one (the peer's first messages after its side of the
//! handshake completed can overtake this node's notice of it) is held, unread, until the
//! session authenticates or the deadline passes. After authentication a frame may be at
//! most the frame limit. ractor_cluster then grows its buffer only as bytes arrive, so an
//! unauthenticated connection never holds more than the handshake limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// Bytes of ractor_cluster's length prefix.
const PREFIX: usize = 8;

/// The largest frames a connection may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Before the peer authenticated (bytes).
    pub handshake: u64,
    /// After (bytes).
    pub session: u64,
}

/// Where the reader is in the current frame.
enum Phase {
    /// Reading the length prefix.
    Prefix { bytes: [u8; PREFIX], filled: usize },
    /// A frame over the handshake limit waits for authentication (true) or the deadline.
    Held {
        bytes: [u8; PREFIX],
        len: u64,
        authenticated: Pin<Box<dyn Future<Output = bool> + Send>>,
    },
    /// Handing the checked prefix to the reader above.
    Emit {
        bytes: [u8; PREFIX],
        sent: usize,
        len: u64,
    },
    /// Passing `remaining` bytes of the frame's body through.
    Body { remaining: u64 },
}

/// A read half that enforces the frame limits and the handshake deadline.
pub struct FrameGuard<R> {
    inner: R,
    limits: FrameLimits,
    authenticated: watch::Receiver<bool>,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    phase: Phase,
    peer: String,
}

impl<R: AsyncRead + Unpin> FrameGuard<R> {
    /// Guards `inner` (from `peer`, for logs): frames within `limits`, authenticated (as
    /// `authenticated` says) by `deadline`.
    pub fn new(
        inner: R,
        limits: FrameLimits,
        authenticated: watch::Receiver<bool>,
        deadline: Instant,
        peer: String,
    ) -> Self {
        Self {
            inner,
            limits,
            authenticated,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            phase: Phase::Prefix {
                bytes: [0; PREFIX],
                filled: 0,
            },
            peer,
        }
    }

    fn is_authenticated(&self) -> bool {
        *self.authenticated.borrow()
    }

    /// Ready with an error once the deadline has passed unauthenticated; else pending (and
    /// woken at the deadline).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.is_authenticated() {
            return Poll::Pending;
        }
        ready!(self.timer.as_mut().poll(cx));
        metrics::counter!("agora_cluster_handshakes_timed_out_total").increment(1);
        tracing::info!(peer = %self.peer, "cluster connection closed: not authenticated in time");
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "cluster peer did not authenticate in time",
        ))
    }

    /// What to do with a frame of `len` bytes announced by `bytes`.
    fn check(&self, bytes: [u8; PREFIX], len: u64) -> io::Result<Phase> {
        let authenticated = self.is_authenticated();
        let limit = if authenticated {
            self.limits.session
        } else {
            self.limits.handshake
        };
        if len <= limit {
            return Ok(Phase::Emit {
                bytes,
                sent: 0,
                len,
            });
        }
        if !authenticated && len <= self.limits.session {
            let mut rx = self.authenticated.clone();
            let deadline = self.deadline;
            let wait = async move {
                matches!(
                    tokio::time::timeout_at(deadline, rx.wait_for(|a| *a)).await,
                    Ok(Ok(_))
                )
            };
            return Ok(Phase::Held {
                bytes,
                len,
                authenticated: Box::pin(wait),
            });
        }
        metrics::counter!("agora_cluster_frames_refused_total").increment(1);
        tracing::warn!(peer = %self.peer, len, limit, authenticated, "cluster connection closed: frame over the limit");
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cluster frame of {len} bytes is over the limit of {limit}"),
        ))
    }

    /// Reads the rest of the length prefix; ready with the next phase, or `None` at the
    /// end of the stream.
    fn poll_prefix(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Phase>>> {
        let Phase::Prefix { mut bytes, filled } = self.phase else {
            return Poll::Ready(Ok(None));
        };
        let mut buf = ReadBuf::new(&mut bytes[filled..]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
            Poll::Pending => match self.poll_deadline(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Ok(None)),
            Poll::Ready(Ok(())) => {
                let filled = filled + buf.filled().len();
                if filled < PREFIX {
                    return Poll::Ready(Ok(Some(Phase::Prefix { bytes, filled })));
                }
                let len = u64::from_be_bytes(bytes);
                Poll::Ready(self.check(bytes, len).map(Some))
            }
        }
    }

    /// Passes up to `remaining` bytes of a frame's body into `out`.
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
        remaining: u64,
    ) -> Poll<io::Result<()>> {
        let want = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(out.remaining());
        let mut part = ReadBuf::new(out.initialize_unfilled_to(want));
        match Pin::new(&mut self.inner).poll_read(cx, &mut part) {
            Poll::Pending => match self.poll_deadline(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = part.filled().len();
                out.advance(n);
                self.phase = Phase::Body {
                    remaining: remaining - n as u64,
                };
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for FrameGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Prefix { .. } => match ready!(this.poll_prefix(cx))? {
                    Some(next) => this.phase = next,
                    // The end of the stream (a prefix cut short reads as one too).
                    None => return Poll::Ready(Ok(())),
                },
                Phase::Held {
                    bytes,
                    len,
                    authenticated,
                } => {
                    let (bytes, len) = (*bytes, *len);
                    if !ready!(authenticated.as_mut().poll(cx)) {
                        metrics::counter!("agora_cluster_handshakes_timed_out_total").increment(1);
                        tracing::info!(peer = %this.peer, len, "cluster connection closed: a large frame before authenticating");
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "cluster peer did not authenticate in time",
                        )));
                    }
                    this.phase = Phase::Emit {
                        bytes,
                        sent: 0,
                        len,
                    };
                }
                Phase::Emit { bytes, sent, len } => {
                    let n = (PREFIX - *sent).min(out.remaining());
                    out.put_slice(&bytes[*sent..*sent + n]);
                    *sent += n;
                    if *sent == PREFIX {
                        let remaining = *len;
                        this.phase = Phase::Body { remaining };
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Body { remaining: 0 } => {
                    this.phase = Phase::Prefix {
                        bytes: [0; PREFIX],
                        filled: 0,
                    };
                }
                Phase::Body { remaining } => {
                    let remaining = *remaining;
                    return this.poll_body(cx, out, remaining);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: FrameLimits = FrameLimits {
        handshake: 64,
        session: 1024,
    };

    fn frame(len: usize) -> Vec<u8> {
        let mut f = (len as u64).to_be_bytes().to_vec();
        f.extend((0..len).map(|i| i as u8));
        f
    }

    /// A guard over one end of a pipe; the other end, and the authentication switch.
    fn guard(
        timeout: Duration,
    ) -> (
        FrameGuard<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        watch::Sender<bool>,
    ) {
        let (near, far) = tokio::io::duplex(1 << 16);
        let (tx, rx) = watch::channel(false);
        let g = FrameGuard::new(near, LIMITS, rx, Instant::now() + timeout, "test".into());
        (g, far, tx)
    }

    /// Reads one frame as ractor_cluster does: the prefix, then the body.
    async fn read_frame(g: &mut FrameGuard<tokio::io::DuplexStream>) -> io::Result<Vec<u8>> {
        let len = g.read_u64().await?;
        let mut body = vec![0; len as usize];
        g.read_exact(&mut body).await?;
        Ok(body)
    }

    #[tokio::test]
    async fn frames_within_the_limits_pass_through_unchanged() {
        let (mut g, mut far, tx) = guard(Duration::from_secs(60));
        far.write_all(&frame(64)).await.unwrap();
        far.write_all(&frame(0)).await.unwrap();
        assert_eq!(read_frame(&mut g).await.unwrap(), frame(64)[8..]);
        assert_eq!(read_frame(&mut g).await.unwrap(), Vec::<u8>::new());
        tx.send_replace(true);
        far.write_all(&frame(1024)).await.unwrap();
        assert_eq!(read_frame(&mut g).await.unwrap(), frame(1024)[8..]);
    }

    #[tokio::test]
    async fn a_frame_over_the_session_limit_is_refused_before_its_body_is_read() {
        let (mut g, mut far, tx) = guard(Duration::from_secs(60));
        tx.send_replace(true);
        far.write_all(&(1025u64).to_be_bytes()).await.unwrap();
        let e = g.read_u64().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // A huge prefix before authenticating too.
        let (mut g, mut far, _tx) = guard(Duration::from_secs(60));
        far.write_all(&u64::MAX.to_be_bytes()).await.unwrap();
        let e = g.read_u64().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[tokio::test]
    async fn a_large_frame_before_authentication_waits_for_it() {
        let (mut g, mut far, tx) = guard(Duration::from_secs(60));
        far.write_all(&frame(65)).await.unwrap();
        let reader = tokio::spawn(async move { read_frame(&mut g).await });
        tokio::task::yield_now().await;
        assert!(
            !reader.is_finished(),
            "a 65-byte frame was read unauthenticated"
        );
        tx.send_replace(true);
        assert_eq!(reader.await.unwrap().unwrap(), frame(65)[8..]);
    }

    #[tokio::test]
    async fn a_large_frame_is_refused_at_the_deadline_without_authentication() {
        let (mut g, mut far, _tx) = guard(Duration::from_millis(200));
        far.write_all(&frame(65)).await.unwrap();
        let e = g.read_u64().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_at_the_deadline_unless_authenticated() {
        let (mut g, mut far, _tx) = guard(Duration::from_millis(200));
        // Half a prefix, then nothing.
        far.write_all(&[0, 0, 0]).await.unwrap();
        let started = Instant::now();
        let e = g.read_u64().await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Authenticated, the deadline no longer applies.
        let (mut g, _far, tx) = guard(Duration::from_millis(200));
        tx.send_replace(true);
        let idle = tokio::time::timeout(Duration::from_millis(800), g.read_u64()).await;
        assert!(idle.is_err(), "an authenticated idle connection was closed");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_reads_as_the_end() {
        let (mut g, far, _tx) = guard(Duration::from_secs(60));
        drop(far);
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).await.unwrap(), 0);
    }
}
