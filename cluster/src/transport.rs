//! Node-to-node transport: a ractor_cluster `NodeServer` on the node's cluster address,
//! authenticated by the cluster's shared secret (the "magic cookie"), and a dialer that
//! keeps a session open to every peer with a lower id (so each pair has one session),
//! reconnecting with backoff when it drops.

use super::directory::Directory;
use super::Membership;
use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};
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
}

/// Starts the node server and the dialer (over TLS when `tls` is set).
pub async fn start(
    membership: &Membership,
    secret: &str,
    directory: Directory,
    tls: Option<super::tls::Tls>,
) -> Result<ActorRef<NodeServerMessage>, TransportStartError> {
    let me = membership
        .nodes
        .iter()
        .find(|n| n.id == membership.me)
        .ok_or(TransportStartError::NotInClusterFile(membership.me))?;
    let server = NodeServer::new(
        me.cluster_addr.port(),
        secret.to_string(),
        format!("{}-node-{}", membership.cluster_name, me.id),
        me.cluster_addr.ip().to_string(),
        tls.as_ref()
            .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor.clone())),
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr(me.cluster_addr.ip());
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| TransportStartError::Spawn(e.to_string()))?;
    let peers: Vec<_> = membership
        .nodes
        .iter()
        .filter(|n| n.id < me.id)
        .cloned()
        .collect();
    let dialer = server.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        // A session needs a moment to authenticate and sync groups: do not dial twice.
        let mut last_dial: std::collections::HashMap<u64, tokio::time::Instant> =
            Default::default();
        loop {
            let mut all_connected = true;
            for p in &peers {
                if directory.gateway(p.id).is_none() {
                    all_connected = false;
                    if last_dial
                        .get(&p.id)
                        .is_some_and(|t| t.elapsed() < Duration::from_secs(3))
                    {
                        continue;
                    }
                    let dialled = match &tls {
                        Some(t) => {
                            ractor_cluster::client_connect_enc(
                                &dialer,
                                p.cluster_addr,
                                t.connector.clone(),
                                t.server_name.clone(),
                            )
                            .await
                        }
                        None => ractor_cluster::client_connect(&dialer, p.cluster_addr).await,
                    };
                    match dialled {
                        Ok(()) => {
                            last_dial.insert(p.id, tokio::time::Instant::now());
                            tracing::info!(peer = p.id, addr = %p.cluster_addr, "dialled peer");
                        }
                        Err(e) => {
                            tracing::debug!(peer = p.id, error = %e, "peer not reachable yet")
                        }
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
    });
    Ok(server)
}
