//! The simulated network as the node sees it: links between nodes' gateways over turmoil
//! TCP, the shop API served on a turmoil listener, and an HTTP client for shoppers.
//!
//! Node-to-node calls carry the same encoded requests as production's ractor_cluster
//! messages; ractor_cluster's session layer itself stays out, because its registry is
//! process-global and several nodes share this process.

use agora_cluster::directory::{GatewayRpc, PeerCallError, PeerGateway, PeerLink, PeerLinks};
use async_trait::async_trait;
use rand::Rng;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

/// The port each node's gateway listens on.
pub const GATEWAY_PORT: u16 = 7000;
/// The port each node's shop API listens on.
pub const HTTP_PORT: u16 = 8080;
/// The port each node's admin endpoint listens on.
pub const ADMIN_PORT: u16 = 9090;
/// Largest frame accepted (a shard streamed in one message can be large).
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// The turmoil host name of node `id`.
pub fn node_host(id: u64) -> String {
    format!("node-{id}")
}

async fn write_frame(s: &mut TcpStream, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    s.write_u8(tag).await?;
    s.write_u32(len).await?;
    s.write_all(body).await?;
    s.flush().await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let tag = s.read_u8().await?;
    let len = s.read_u32().await?;
    if len > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut body = vec![0; len as usize];
    s.read_exact(&mut body).await?;
    Ok((tag, body))
}

const ANSWER_OK: u8 = 0;
const ANSWER_TIMEOUT: u8 = 1;
const ANSWER_FAILED: u8 = 2;

/// Most idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;
/// Most connection attempts in flight to one peer.
const CONNECTS_AT_ONCE: usize = 4;
/// First pause after a failed connection attempt; it doubles up to `CONNECT_BACKOFF_MAX`.
const CONNECT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// Longest pause after failed connection attempts.
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a node keeps about its connections to one peer. turmoil never frees the port of a
/// connection attempt that fails or is abandoned, so attempts are bounded: a few at a time,
/// and none for a while after one failed (calls wait, within their timeout); answered
/// connections are kept for the next call.
#[derive(Default)]
struct PeerConnections {
    idle: Vec<TcpStream>,
    connecting: usize,
    backoff: Option<Duration>,
    retry_at: Option<tokio::time::Instant>,
}

/// The nodes of a run that exist so far: the founders, then each node the harness started
/// to join. Every node's links read it, so a joiner is reachable once it is started.
pub type KnownNodes = Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>;

/// Whether a node's transport sends some calls twice (the `Duplicates` fault), and the
/// stream that picks which.
#[derive(Clone)]
pub struct Duplication {
    /// Per-mille of the calls that may be resent which are sent twice (0: none).
    pub per_mille: Arc<AtomicU32>,
    /// Which calls, and how late each second copy goes.
    pub rng: Arc<std::sync::Mutex<crate::seed::Stream>>,
    /// Calls sent twice so far.
    pub sent_twice: Arc<AtomicU64>,
}

/// Longest a second copy of a call trails the first (ms): a resend after a reconnection.
const DUPLICATE_DELAY_MAX_MS: u64 = 400;

impl Duplication {
    /// No duplicates yet, drawing from `rng` once some are asked for.
    pub fn new(rng: crate::seed::Stream) -> Self {
        Self {
            per_mille: Arc::default(),
            rng: Arc::new(std::sync::Mutex::new(rng)),
            sent_twice: Arc::default(),
        }
    }

    /// How long after the first a second copy of a call of kind `rpc` carrying `bytes` goes,
    /// if it does. Only calls the protocols above already resend may be sent twice (see
    /// `may_resend`); while the fault is off nothing is drawn.
    fn second_copy_after(&self, rpc: GatewayRpc, bytes: &[u8]) -> Option<Duration> {
        let per_mille = self.per_mille.load(Ordering::Relaxed);
        if per_mille == 0 || !may_resend(rpc, bytes) {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let twice = rng.random_range(0..1_000u32) < per_mille;
        if twice {
            self.sent_twice.fetch_add(1, Ordering::Relaxed);
        }
        twice.then(|| Duration::from_millis(rng.random_range(0..=DUPLICATE_DELAY_MAX_MS)))
    }
}

/// Whether a call may reach its peer twice in production: Raft's (openraft resends), the
/// catalog's polls and read indexes (reads), and relayed messages (delivered at least once,
/// deduplicated by their ids). A shopper's request the edge forwards (an envelope without a
/// message id) is sent once: TCP never duplicates it, and no layer resends it.
fn may_resend(rpc: GatewayRpc, bytes: &[u8]) -> bool {
    use agora_cluster::envelope::{decode, Envelope, Payload};
    match rpc {
        GatewayRpc::Raft | GatewayRpc::Group | GatewayRpc::CatalogSince | GatewayRpc::ReadIndex => {
            true
        }
        GatewayRpc::Deliver => matches!(
            decode::<Envelope>(bytes).map(|e| e.payload),
            Ok(Payload::Batch(_)
                | Payload::Request {
                    msg_id: Some(_),
                    ..
                })
        ),
        _ => false,
    }
}

/// One node's links to its peers.
pub struct SimLinks {
    me: u64,
    known: KnownNodes,
    conns:
        std::sync::Mutex<std::collections::BTreeMap<u64, Arc<std::sync::Mutex<PeerConnections>>>>,
    duplication: Duplication,
}

impl SimLinks {
    /// Links from node `me` to every other node of `known`, now and as it grows, sending
    /// calls twice as `duplication` says.
    pub fn new(me: u64, known: KnownNodes, duplication: Duplication) -> Self {
        Self {
            me,
            known,
            conns: Default::default(),
            duplication,
        }
    }
}

impl PeerLinks for SimLinks {
    fn link(&self, id: u64) -> Option<Arc<dyn PeerLink>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if id == self.me || !known.contains(&id) {
            return None;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let conns = conns.entry(id).or_default().clone();
        let duplication = self.duplication.clone();
        Some(Arc::new(SimLink {
            peer: id,
            conns,
            duplication,
        }) as Arc<dyn PeerLink>)
    }

    fn peers(&self) -> Vec<u64> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.iter().copied().filter(|id| *id != self.me).collect()
    }
}

/// A link to one peer: one call at a time per connection (a connection that failed or
/// timed out is dropped, so a reset or a partition fails only the calls on it).
#[derive(Clone)]
struct SimLink {
    peer: u64,
    conns: Arc<std::sync::Mutex<PeerConnections>>,
    duplication: Duplication,
}

/// How a call gets its connection.
enum Connection {
    Idle(TcpStream),
    Connect,
    /// Not before this time (after a failed attempt, or while enough are in flight).
    Wait(tokio::time::Instant),
}

/// How long a call waits for a connection attempt to free up when enough are in flight.
const CONNECT_SLOT_WAIT: Duration = Duration::from_millis(10);

impl PeerConnections {
    fn connection(&mut self) -> Connection {
        if let Some(s) = self.idle.pop() {
            return Connection::Idle(s);
        }
        let now = tokio::time::Instant::now();
        if let Some(at) = self.retry_at.filter(|t| now < *t) {
            return Connection::Wait(at);
        }
        if self.connecting >= CONNECTS_AT_ONCE {
            return Connection::Wait(now + CONNECT_SLOT_WAIT);
        }
        self.connecting += 1;
        Connection::Connect
    }

    fn connected(&mut self, ok: bool) {
        self.connecting -= 1;
        if ok {
            self.backoff = None;
            self.retry_at = None;
        } else {
            let pause = self.backoff.map_or(CONNECT_BACKOFF_FIRST, |b| b * 2);
            let pause = pause.min(CONNECT_BACKOFF_MAX);
            self.backoff = Some(pause);
            self.retry_at = Some(tokio::time::Instant::now() + pause);
        }
    }

    fn keep(&mut self, s: TcpStream) {
        if self.idle.len() < IDLE_PER_PEER {
            self.idle.push(s);
        }
    }
}

impl SimLink {
    fn with<T>(&self, f: impl FnOnce(&mut PeerConnections) -> T) -> Option<T> {
        self.conns.lock().ok().map(|mut c| f(&mut c))
    }

    /// A connection for one call: an idle one, or a new one (bounded, see
    /// `PeerConnections`).
    async fn open(&self) -> std::io::Result<TcpStream> {
        // Waiting takes virtual time, as a real attempt would: a caller that retries at once
        // on failure never spins at one instant.
        let mut next = self.with(PeerConnections::connection);
        while let Some(Connection::Wait(at)) = next {
            tokio::time::sleep_until(at).await;
            next = self.with(PeerConnections::connection);
        }
        match next {
            Some(Connection::Idle(s)) => Ok(s),
            Some(Connection::Connect) => {
                // The attempt runs on its own, so a caller that gives up neither abandons it
                // midway (turmoil would never free its port) nor loses the count; a
                // connection nobody waits for any more is kept for the next call.
                let (host, conns) = (node_host(self.peer), self.conns.clone());
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let result = TcpStream::connect((host.as_str(), GATEWAY_PORT)).await;
                    if let Ok(mut c) = conns.lock() {
                        c.connected(result.is_ok());
                    }
                    if let Err(Ok(s)) = tx.send(result) {
                        if let Ok(mut c) = conns.lock() {
                            c.keep(s);
                        }
                    }
                });
                rx.await.map_err(std::io::Error::other).and_then(|r| r)
            }
            _ => Err(std::io::Error::other("connection state lock poisoned")),
        }
    }

    /// Sends one call's frame and reads its answer on a connection of this link.
    async fn exchange(
        &self,
        rpc: GatewayRpc,
        frame: &[u8],
    ) -> std::io::Result<(TcpStream, (u8, Vec<u8>))> {
        let mut s = self.open().await?;
        write_frame(&mut s, rpc.code(), frame).await?;
        let answer = read_frame(&mut s).await?;
        Ok((s, answer))
    }

    /// Sends the call's frame a second time `after` the first, on a connection of its own,
    /// as a transport that lost its connection and resent what it had not seen answered
    /// would; the answer is dropped (the caller has the first one, or gave up).
    fn send_second_copy(&self, rpc: GatewayRpc, frame: Vec<u8>, after: Duration, within: Duration) {
        let link = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Ok(Ok((s, _))) = tokio::time::timeout(within, link.exchange(rpc, &frame)).await {
                link.with(|c| c.keep(s));
            }
        });
    }
}

#[async_trait]
impl PeerLink for SimLink {
    async fn call(
        &self,
        rpc: GatewayRpc,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerCallError> {
        let mut frame = Vec::with_capacity(8 + bytes.len());
        frame.extend_from_slice(&(timeout.as_millis() as u64).to_be_bytes());
        frame.extend_from_slice(&bytes);
        if let Some(after) = self.duplication.second_copy_after(rpc, &bytes) {
            self.send_second_copy(rpc, frame.clone(), after, timeout);
        }
        match tokio::time::timeout(timeout, self.exchange(rpc, &frame)).await {
            Err(_) => Err(PeerCallError::Timeout),
            Ok(Err(e)) => Err(PeerCallError::Failed(format!("node {}: {e}", self.peer))),
            Ok(Ok((s, answer))) => {
                self.with(|c| c.keep(s));
                match answer {
                    (ANSWER_OK, body) => Ok(body),
                    (ANSWER_TIMEOUT, _) => Err(PeerCallError::Timeout),
                    (_, body) => Err(PeerCallError::Failed(
                        String::from_utf8_lossy(&body).into_owned(),
                    )),
                }
            }
        }
    }
}

/// Serves this node's gateway to its peers on `GATEWAY_PORT`: each connection carries one
/// call after another.
pub async fn serve_gateway(gateway: PeerGateway) -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", GATEWAY_PORT)).await?;
    loop {
        let (s, _) = listener.accept().await?;
        tokio::spawn(serve_connection(s, gateway.clone()));
    }
}

/// Answers the calls of one connection until it closes or sends garbage.
async fn serve_connection(mut s: TcpStream, gateway: PeerGateway) {
    while let Ok((code, body)) = read_frame(&mut s).await {
        let (Some(rpc), true) = (GatewayRpc::from_code(code), body.len() >= 8) else {
            let _ = write_frame(&mut s, ANSWER_FAILED, b"bad frame").await;
            return;
        };
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&body[..8]);
        let timeout = Duration::from_millis(u64::from_be_bytes(ms));
        let answer = gateway.call(rpc, body[8..].to_vec(), timeout).await;
        let written = match answer {
            Ok(bytes) => write_frame(&mut s, ANSWER_OK, &bytes).await,
            Err(PeerCallError::Timeout) => write_frame(&mut s, ANSWER_TIMEOUT, &[]).await,
            Err(PeerCallError::Failed(why)) => {
                write_frame(&mut s, ANSWER_FAILED, why.as_bytes()).await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// A turmoil listener axum can serve on.
pub struct SimListener(pub TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(conn) => return conn,
                // turmoil's accept fails only when the host is going away; try again.
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Serves `app` on `port` of this host.
pub async fn serve_http(port: u16, app: axum::Router) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    // As production serves it: each connection carries its client's address (`ConnectInfo`),
    // which the rate limits key on.
    let listener = SimListener(listener).tap_io(|_: &mut TcpStream| {});
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).await
}

/// An HTTP answer: status and JSON body (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Parsed body.
    pub body: serde_json::Value,
    /// Whether it says it replays an earlier answer (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// Seconds its `Retry-After` header asks to wait, if it has one.
    pub retry_after_secs: Option<u64>,
}

/// Sends one request to port `port` of node `node` over a fresh connection.
pub async fn http(
    node: u64,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<Answer, String> {
    use http_body_util::BodyExt;
    let s = TcpStream::connect((node_host(node).as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", node_host(node));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            bytes::Bytes::from(b.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let req = req
        .body(http_body_util::Full::new(payload))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v.as_bytes() == b"true");
    let retry_after_secs = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        replayed,
        retry_after_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::Stream;

    #[test]
    fn only_calls_that_production_resends_are_sent_twice_and_only_while_asked() {
        let d = Duplication::new(Stream::new(3, "duplicates-1"));
        // Off: nothing is drawn, nothing is sent twice.
        assert!(d.second_copy_after(GatewayRpc::Raft, b"x").is_none());
        d.per_mille.store(1_000, Ordering::Relaxed);
        for rpc in [
            GatewayRpc::Raft,
            GatewayRpc::Group,
            GatewayRpc::CatalogSince,
            GatewayRpc::ReadIndex,
        ] {
            let after = d.second_copy_after(rpc, b"x");
            assert!(
                after.is_some_and(|a| a <= Duration::from_millis(DUPLICATE_DELAY_MAX_MS)),
                "{rpc:?}: {after:?}"
            );
        }
        // Calls no layer resends, and a delivery that is not a readable envelope.
        for rpc in [
            GatewayRpc::Join,
            GatewayRpc::Propose,
            GatewayRpc::InstallShard,
            GatewayRpc::RequestMove,
            GatewayRpc::DiscardShard,
            GatewayRpc::Deliver,
        ] {
            assert!(d.second_copy_after(rpc, b"x").is_none(), "{rpc:?}");
        }
        assert_eq!(d.sent_twice.load(Ordering::Relaxed), 4);
    }
}
