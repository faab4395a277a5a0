//! The cluster port's listener. ractor_cluster's own accept loop bounds nothing before a
//! peer authenticates, so Agora accepts connections itself and hands each to the node
//! server as an external stream: at most `max_unauthenticated` connections (and
//! `max_unauthenticated_per_address` from one address) may be accepted and not yet
//! authenticated, more are closed at once; each must finish TLS and the secret's challenge
//! within `handshake_timeout_ms`; and its read half is a `FrameGuard` (small frames before
//! authentication, bounded ones after). A session is authenticated when ractor_cluster
//! says so (`node_session_authenticated`), which it does only after the challenge passed,
//! and when the node id it claims is proven: with TLS, the peer's certificate must name
//! that node (`tls::names_node`); a session that claims another node is stopped.

use crate::frame_guard::{FrameGuard, FrameLimits};
use crate::identity::Identities;
use agora_cluster_config::cluster::ClusterConnectionLimits;
use ractor::ActorRef;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{
    BoxRead, BoxWrite, ClusterBidiStream, NodeEventSubscription, NodeServerMessage,
};
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Unauthenticated connections: in total and per address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The cluster port's bounds and the connections still authenticating.
pub struct Admission {
    limits: ClusterConnectionLimits,
    counts: Mutex<Counts>,
    pending: Mutex<HashMap<String, Weak<Handshake>>>,
    next_id: AtomicU64,
}

/// A place among the unauthenticated connections, given back when dropped.
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("agora_cluster_connections_unauthenticated").decrement(1.0);
        if let Ok(mut c) = self.admission.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_address.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_address.remove(&self.ip);
                }
            }
        }
    }
}

/// One connection's handshake: whether it authenticated, and its slot until then.
struct Handshake {
    label: String,
    admission: Arc<Admission>,
    authenticated: watch::Sender<bool>,
    slot: Mutex<Option<Slot>>,
    /// The certificate the peer presented (TLS only).
    peer_cert: Mutex<Option<CertificateDer<'static>>>,
}

impl Handshake {
    /// The session authenticated: frames may grow, the deadline is off, the slot is free.
    fn authenticated(&self) {
        self.authenticated.send_replace(true);
        if let Ok(mut slot) = self.slot.lock() {
            slot.take();
        }
    }
}

impl Handshake {
    /// Keeps the end-entity certificate of `chain` (what the peer presented) for the check
    /// at authentication.
    fn keep_peer_cert(&self, chain: Option<&[CertificateDer<'static>]>) {
        if let (Some(cert), Ok(mut kept)) = (chain.and_then(|c| c.first()), self.peer_cert.lock()) {
            *kept = Some(cert.clone());
        }
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.admission.pending.lock() {
            pending.remove(&self.label);
        }
    }
}

impl Admission {
    /// Bounds connections by `limits`.
    pub fn new(limits: ClusterConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The frame limits of every connection.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            handshake: self.limits.max_handshake_frame_bytes,
            session: self.limits.max_frame_bytes,
        }
    }

    /// How long a connection has to authenticate.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.handshake_timeout_ms)
    }

    /// A slot for a connection from `ip`, unless the total or the address is at its bound.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().ok()?;
        let from_ip = c.per_address.get(&ip).copied().unwrap_or(0);
        if c.total >= self.limits.max_unauthenticated
            || from_ip >= self.limits.max_unauthenticated_per_address
        {
            return None;
        }
        c.total += 1;
        *c.per_address.entry(ip).or_default() += 1;
        metrics::gauge!("agora_cluster_connections_unauthenticated").increment(1.0);
        Some(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Registers a connection with `peer` (holding `slot` if it was accepted here).
    fn register(self: &Arc<Self>, peer: SocketAddr, slot: Option<Slot>) -> Arc<Handshake> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let label = format!("{peer}#{id}");
        let handshake = Arc::new(Handshake {
            label: label.clone(),
            admission: self.clone(),
            authenticated: watch::channel(false).0,
            slot: Mutex::new(slot),
            peer_cert: Mutex::new(None),
        });
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(label, Arc::downgrade(&handshake));
        }
        handshake
    }

    /// The handshake of the stream labelled `label`, while it is pending.
    fn pending(&self, label: &str) -> Option<Arc<Handshake>> {
        // Upgraded outside the lock: dropping the last reference takes the lock again.
        let weak = self.pending.lock().ok().and_then(|p| p.get(label).cloned());
        weak.and_then(|w| w.upgrade())
    }

    /// A stream for the node server: `read` guarded, both halves tied to `handshake`.
    fn guarded(
        &self,
        handshake: Arc<Handshake>,
        read: impl AsyncRead + Unpin + Send + 'static,
        write: impl AsyncWrite + Unpin + Send + 'static,
        deadline: Instant,
    ) -> Box<GuardedStream> {
        let guard = FrameGuard::new(
            read,
            self.frame_limits(),
            handshake.authenticated.subscribe(),
            deadline,
            handshake.label.clone(),
        );
        Box::new(GuardedStream {
            label: handshake.label.clone(),
            read: Box::new(Tied {
                inner: guard,
                _handshake: handshake,
            }),
            write: Box::new(write),
        })
    }
}

/// Proves each session's node id when ractor_cluster authenticates it, then tells the
/// admission (subscribed to the node server).
pub struct AuthWatcher {
    /// The connections still authenticating.
    pub admission: Arc<Admission>,
    /// Where proven identities go (the directory's).
    pub identities: Arc<Identities>,
    /// The cluster's name (session names and certificate names carry it).
    pub cluster_name: String,
    /// Whether sessions run over TLS (then a certificate must name the claimed node).
    pub tls: bool,
}

impl AuthWatcher {
    /// The node `ses` proved to be, or why it did not.
    fn prove(
        &self,
        ses: &NodeServerSessionInformation,
        handshake: &Handshake,
    ) -> Result<u64, crate::identity::IdentityRefused> {
        let name = ses
            .peer_name
            .as_ref()
            .map(|n| n.name.as_str())
            .unwrap_or("");
        let cert = handshake.peer_cert.lock().ok().and_then(|c| c.clone());
        crate::identity::prove(&self.cluster_name, name, self.tls, cert.as_ref())
    }
}

impl NodeEventSubscription for AuthWatcher {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.identities.forget(ses.node_id);
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        let Some(handshake) = self.admission.pending(&ses.peer_addr) else {
            return;
        };
        match self.prove(&ses, &handshake) {
            Ok(id) => {
                self.identities.prove(ses.node_id, id);
                handshake.authenticated();
                tracing::debug!(
                    peer = ses.peer_addr,
                    node = id,
                    "cluster session authenticated"
                );
            }
            Err(why) => {
                metrics::counter!("agora_cluster_identity_refused_total").increment(1);
                tracing::warn!(peer = ses.peer_addr, reason = %why, "cluster session refused: its identity is not proven");
                ses.actor.stop(Some(format!("identity not proven: {why}")));
            }
        }
    }
}

/// A read half that keeps its connection's handshake registered while it lives.
struct Tied<R> {
    inner: R,
    _handshake: Arc<Handshake>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tied<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// A connection handed to the node server.
pub struct GuardedStream {
    label: String,
    read: BoxRead,
    write: BoxWrite,
}

impl ClusterBidiStream for GuardedStream {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        (self.read, self.write)
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.label.clone())
    }
}

/// Accepts connections on `listener` for `server`, within `admission`'s bounds (over TLS
/// when `tls` is set), until the node stops.
pub async fn serve(
    listener: TcpListener,
    server: ActorRef<NodeServerMessage>,
    admission: Arc<Admission>,
    tls: Option<super::tls::Tls>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "cluster port accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admission.admit(peer.ip()) else {
            metrics::counter!("agora_cluster_connections_refused_total").increment(1);
            tracing::debug!(%peer, "cluster connection refused: too many unauthenticated");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handshake = admission.register(peer, Some(slot));
        tokio::spawn(open(
            stream,
            handshake,
            server.clone(),
            admission.clone(),
            tls.as_ref().map(super::tls::Tls::acceptor),
        ));
    }
}

/// Finishes TLS (if any) within the deadline and hands the connection to the node server.
async fn open(
    stream: TcpStream,
    handshake: Arc<Handshake>,
    server: ActorRef<NodeServerMessage>,
    admission: Arc<Admission>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let deadline = Instant::now() + admission.handshake_timeout();
    let guarded = match tls {
        None => {
            let (read, write) = stream.into_split();
            admission.guarded(handshake, read, write, deadline)
        }
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                handshake.keep_peer_cert(tls.get_ref().1.peer_certificates());
                let (read, write) = tokio::io::split(tls);
                admission.guarded(handshake, read, write, deadline)
            }
            Ok(Err(e)) => {
                tracing::info!(peer = handshake.label, error = %e, "cluster TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics::counter!("agora_cluster_handshakes_timed_out_total").increment(1);
                tracing::info!(
                    peer = handshake.label,
                    "cluster connection closed: TLS not finished in time"
                );
                return;
            }
        },
    };
    if let Err(e) = server.cast(NodeServerMessage::ConnectionOpenedExternal {
        stream: guarded,
        is_server: true,
    }) {
        tracing::warn!(error = %e, "the node server is gone: cluster connection dropped");
    }
}

/// Dials `addr` (over TLS when `tls` is set, to the peer whose certificate carries the
/// given name) and hands the connection to
/// `server`, guarded like an accepted one (not counted against the bounds: this node chose
/// the peer).
pub async fn dial(
    server: &ActorRef<NodeServerMessage>,
    admission: &Arc<Admission>,
    addr: SocketAddr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
) -> Result<(), std::io::Error> {
    let deadline = Instant::now() + admission.handshake_timeout();
    let timed_out = |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "dial timed out");
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(timed_out)??;
    stream.set_nodelay(true)?;
    let handshake = admission.register(addr, None);
    let guarded = match tls {
        None => {
            let (read, write) = stream.into_split();
            admission.guarded(handshake, read, write, deadline)
        }
        Some((connector, name)) => {
            let tls = tokio::time::timeout_at(deadline, connector.connect(name, stream))
                .await
                .map_err(timed_out)??;
            handshake.keep_peer_cert(tls.get_ref().1.peer_certificates());
            let (read, write) = tokio::io::split(tls);
            admission.guarded(handshake, read, write, deadline)
        }
    };
    ractor_cluster::client_connect_external(server, guarded)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// A TLS acceptor that refuses every handshake: ractor_cluster's node server always runs a
/// listener of its own, which Agora binds to an ephemeral loopback port and gives this, so
/// nothing reaches a session through it.
pub fn refusing_acceptor() -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Has no certificate for anyone.
#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_address: usize) -> Arc<Admission> {
        Admission::new(ClusterConnectionLimits {
            max_unauthenticated: total,
            max_unauthenticated_per_address: per_address,
            ..Default::default()
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn unauthenticated_connections_are_bounded_in_total_and_per_address() {
        let a = admission(3, 2);
        let first = a.admit(ip(1)).expect("first from .1");
        let _second = a.admit(ip(1)).expect("second from .1");
        assert!(a.admit(ip(1)).is_none(), "a third from one address");
        let _third = a.admit(ip(2)).expect("first from .2");
        assert!(a.admit(ip(3)).is_none(), "a fourth in total");
        drop(first);
        assert!(
            a.admit(ip(1)).is_some(),
            "a closed connection's slot is free"
        );
    }

    #[test]
    fn authenticating_frees_the_slot_and_lifts_the_limits() {
        let a = admission(1, 1);
        let peer = SocketAddr::from((ip(1), 4000));
        let handshake = a.register(peer, a.admit(ip(1)));
        let authenticated = handshake.authenticated.subscribe();
        assert!(a.admit(ip(2)).is_none(), "the one slot is taken");
        assert!(a.pending("somebody else").is_none());
        assert!(!*authenticated.borrow());
        a.pending(&handshake.label)
            .expect("the handshake is pending")
            .authenticated();
        assert!(*authenticated.borrow());
        assert!(
            a.admit(ip(2)).is_some(),
            "the slot is free once authenticated"
        );
        drop(handshake);
        assert!(
            a.pending.lock().unwrap().is_empty(),
            "a closed connection is forgotten"
        );
    }
}
