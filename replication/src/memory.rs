//! A `GroupTransport` inside one process: a call goes straight to the target node's
//! `Groups::serve`, still encoded and decoded, and a node can be cut off. For tests and the
//! replication benchmark; the cluster's transport carries the same bytes between processes.

use crate::network::{GroupTransport, TransportError};
use crate::{Groups, NodeId};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The nodes of one process, reachable by id.
#[derive(Default, Clone)]
pub struct MemoryTransport {
    nodes: Arc<RwLock<BTreeMap<NodeId, Groups>>>,
    cut_off: Arc<RwLock<BTreeSet<NodeId>>>,
}

impl MemoryTransport {
    /// Makes node `id`'s groups reachable.
    pub fn add(&self, id: NodeId, groups: Groups) {
        if let Ok(mut n) = self.nodes.write() {
            n.insert(id, groups);
        }
    }

    /// Cuts node `id` off (`true`) from every other node, or heals it (`false`).
    pub fn cut_off(&self, id: NodeId, cut: bool) {
        if let Ok(mut c) = self.cut_off.write() {
            if cut {
                c.insert(id);
            } else {
                c.remove(&id);
            }
        }
    }

    fn reachable(&self, to: NodeId) -> Option<Groups> {
        if self.cut_off.read().ok()?.contains(&to) {
            return None;
        }
        self.nodes.read().ok()?.get(&to).cloned()
    }
}

/// One node's view of a `MemoryTransport`: its calls fail while it is cut off.
#[derive(Clone)]
pub struct MemoryLink {
    /// The calling node.
    pub from: NodeId,
    /// The shared network.
    pub net: MemoryTransport,
}

impl MemoryLink {
    /// `to`'s groups, if a call from this node reaches them now (neither end cut off).
    fn peer(&self, to: NodeId) -> Option<Groups> {
        let from_cut = self
            .net
            .cut_off
            .read()
            .map(|c| c.contains(&self.from))
            .unwrap_or(true);
        self.net.reachable(to).filter(|_| !from_cut)
    }
}

#[async_trait]
impl GroupTransport for MemoryLink {
    fn connected(&self, to: NodeId) -> bool {
        self.peer(to).is_some()
    }

    async fn call(
        &self,
        to: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let peer = self.peer(to).ok_or(TransportError::Unreachable(to))?;
        tokio::time::timeout(timeout, async move { peer.serve(&request).await })
            .await
            .map_err(|_| TransportError::Call {
                node: to,
                reason: "timed out".into(),
            })
    }
}
