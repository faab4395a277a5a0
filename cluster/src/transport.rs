//! Node-to-node transport: a ractor_cluster `NodeServer`, authenticated by the cluster's
//! shared secret (the "magic cookie"), fed by Agora's own listener on the node's cluster
//! address (`admission`: bounds before authentication, frame limits, a handshake deadline),
//! and a dialer that keeps a session open to every peer with a lower id (so each pair has
//! one session), reconnecting with backoff when it drops. A peer whose cluster address is a
//! host name is resolved again at each attempt, so a peer that came back on another IP (a
//! rescheduled pod) is found.

use super::admission::{self, Admission, AuthWatcher};
use super::directory::Directory;
use super::Membership;
use agora_cluster_config::addr::ClusterAddr;
use agora_cluster_config::cluster::ClusterConnectionLimits;
use ractor::{Actor, ActorRef};
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage};
use std::collections::BTreeMap;
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

/// The cluster addresses of the nodes, by id, as the cluster file writes them (host names
/// included); a node missing here is dialled at its membership entry's address.
pub type ClusterAddrs = BTreeMap<u64, ClusterAddr>;

/// Starts the node server, the cluster port's listener and the dialer (over TLS when `tls`
/// is set), the listener bounded by `limits`. Peers are dialled at their `addrs` entry.
pub async fn start(
    membership: &Membership,
    (secret, addrs): (&str, &ClusterAddrs),
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
        match addrs.get(&me.id) {
            Some(ClusterAddr::Host { name, .. }) => name.clone(),
            _ => me.cluster_addr.ip().to_string(),
        },
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
        tls.clone(),
    ));
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().keep_reloading());
    }
    let peers: Vec<_> = membership
        .nodes
        .iter()
        .filter(|n| n.id < me.id)
        .map(|n| {
            let addr = addrs.get(&n.id).cloned();
            (n.id, addr.unwrap_or(ClusterAddr::Ip(n.cluster_addr)))
        })
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

/// Keeps a session open to each of `peers` (id, address), dialling again with backoff when
/// one drops.
async fn keep_dialling(
    peers: Vec<(u64, ClusterAddr)>,
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
        for (id, addr) in &peers {
            let id = *id;
            if directory.gateway(id).is_some() {
                continue;
            }
            all_connected = false;
            if last_dial
                .get(&id)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(3))
            {
                continue;
            }
            let tls = match tls
                .as_ref()
                .map(|t| t.node_name(id).map(|n| (t.connector(), n)))
            {
                None => None,
                Some(Ok(named)) => Some(named),
                Some(Err(e)) => {
                    tracing::warn!(peer = id, error = %e, "cannot name the peer for TLS");
                    continue;
                }
            };
            match dial_peer(&server, &admission, addr, tls).await {
                Ok(ip) => {
                    last_dial.insert(id, tokio::time::Instant::now());
                    tracing::info!(peer = id, %addr, %ip, "dialled peer");
                }
                Err(e) => {
                    tracing::debug!(peer = id, %addr, error = %e, "peer not reachable yet")
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

/// Dials `addr`: an IP at once, a host name at each of the addresses it resolves to now
/// (until one answers). Returns the IP that answered.
async fn dial_peer(
    server: &ActorRef<NodeServerMessage>,
    admission: &Arc<Admission>,
    addr: &ClusterAddr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
) -> Result<SocketAddr, std::io::Error> {
    let ips: Vec<SocketAddr> = match addr {
        ClusterAddr::Ip(ip) => vec![*ip],
        ClusterAddr::Host { name, port } => {
            let lookup = tokio::net::lookup_host((name.as_str(), *port));
            tokio::time::timeout(admission.handshake_timeout(), lookup)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "lookup timed out")
                })??
                .collect()
        }
    };
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{addr} resolves to no address"),
    );
    for ip in ips {
        match admission::dial(server, admission, ip, tls.clone()).await {
            Ok(()) => return Ok(ip),
            Err(e) => last = e,
        }
    }
    Err(last)
}
