//! Node-to-node transport: a ractor_cluster `NodeServer`, authenticated by the cluster's
//! shared secret (the "magic cookie"), fed by Agora's own listener on the node's cluster
//! address (`admission`: bounds before authentication, frame limits, a handshake deadline),
//! and a dialer that keeps a session open to every peer with a lower id (so each pair has
//! one session), reconnecting with backoff when it drops.

use super::admission::{self, Admission, AuthWatcher};
use super::directory::Directory;
use super::Membership;
use agora_cluster_config::cluster::{ClusterConnectionLimits, NodeEntry};
use ractor::{Actor, ActorRef};
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Why the transport did not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportStartError {
    /// This node's id has no entry in the cluster file.
    #[error("node {0} is not in the cluster file: add a [[nodes]] entry with its id")]
    NotInClusterFile(u64),
    /// The node server actor could not be spawned.
    #[error("cannot start the node server: {0}")]
    Spawn(String),
    /// The cluster address could not be listened on.
    #[error("cannot listen on the cluster address {addr}: {error} (is another process using it?)")]
    Bind {
        /// The node's cluster address.
        addr: SocketAddr,
        /// What the system said.
        error: std::io::Error,
    },
}

/// Starts the node server, the cluster port's listener and the dialer (over TLS when `tls`
/// is set), the listener bounded by `limits`.
pub async fn start(
    membership: &Membership,
    secret: &str,
    directory: Directory,
    tls: Option<super::tls::Tls>,
    limits: ClusterConnectionLimits,
) -> Result<ActorRef<NodeServerMessage>, TransportStartError> {
    let me = membership
        .nodes
        .iter()
        .find(|n| n.id == membership.me)
        .ok_or(TransportStartError::NotInClusterFile(membership.me))?;
    let listener = tokio::net::TcpListener::bind(me.cluster_addr)
        .await
        .map_err(|error| TransportStartError::Bind {
            addr: me.cluster_addr,
            error,
        })?;
    // ractor_cluster always runs a listener of its own: an ephemeral loopback port whose
    // TLS refuses everyone. Sessions come from `admission::serve` and `admission::dial`.
    let unused = admission::refusing_acceptor()
        .map_err(|e| TransportStartError::Spawn(format!("TLS: {e}")))?;
    let server = NodeServer::new(
        0,
        secret.to_string(),
        crate::identity::node_session_name(&membership.cluster_name, me.id),
        me.cluster_addr.ip().to_string(),
        Some(IncomingEncryptionMode::Tls(unused)),
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
    .with_max_inbound_frame_size(limits.max_frame_bytes);
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| TransportStartError::Spawn(e.to_string()))?;
    let admission = Admission::new(limits);
    // Before any connection: the node server handles its messages in order.
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "agora-admission".into(),
            subscription: Box::new(AuthWatcher {
                admission: admission.clone(),
                identities: directory.identities(),
                cluster_name: membership.cluster_name.clone(),
                tls: tls.is_some(),
            }),
        })
        .map_err(|e| TransportStartError::Spawn(e.to_string()))?;
    tokio::spawn(admission::serve(
        listener,
        server.clone(),
        admission.clone(),
        tls.as_ref().map(|t| t.acceptor.clone()),
    ));
    let peers: Vec<_> = membership
        .nodes
        .iter()
        .filter(|n| n.id < me.id)
        .cloned()
        .collect();
    tokio::spawn(keep_dialling(
        peers,
        server.clone(),
        admission,
        directory,
        tls,
    ));
    Ok(server)
}

/// Keeps a session open to each of `peers`, dialling again with backoff when one drops.
async fn keep_dialling(
    peers: Vec<NodeEntry>,
    server: ActorRef<NodeServerMessage>,
    admission: Arc<Admission>,
    directory: Directory,
    tls: Option<super::tls::Tls>,
) {
    let mut backoff = Duration::from_millis(100);
    // A session needs a moment to authenticate and sync groups: do not dial twice.
    let mut last_dial: std::collections::HashMap<u64, tokio::time::Instant> = Default::default();
    loop {
        let mut all_connected = true;
        for p in &peers {
            if directory.gateway(p.id).is_some() {
                continue;
            }
            all_connected = false;
            if last_dial
                .get(&p.id)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(3))
            {
                continue;
            }
            let tls = match tls
                .as_ref()
                .map(|t| t.node_name(p.id).map(|n| (&t.connector, n)))
            {
                None => None,
                Some(Ok(named)) => Some(named),
                Some(Err(e)) => {
                    tracing::warn!(peer = p.id, error = %e, "cannot name the peer for TLS");
                    continue;
                }
            };
            match admission::dial(&server, &admission, p.cluster_addr, tls).await {
                Ok(()) => {
                    last_dial.insert(p.id, tokio::time::Instant::now());
                    tracing::info!(peer = p.id, addr = %p.cluster_addr, "dialled peer");
                }
                Err(e) => {
                    tracing::debug!(peer = p.id, error = %e, "peer not reachable yet")
                }
            }
        }
        backoff = if all_connected {
            Duration::from_millis(500)
        } else {
            (backoff * 2).min(Duration::from_secs(2))
        };
        tokio::time::sleep(backoff).await;
    }
}
