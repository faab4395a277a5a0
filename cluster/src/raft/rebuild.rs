//! A member of the shard-map group whose disk is new rebuilds before it may vote.
//!
//! A replaced disk forgets every map entry the node had acknowledged. Were it to vote at
//! once, it could help a lagging peer win an election and so lose committed map entries
//! (two nodes would then read different maps: a shard served twice). So a member on a new
//! store first asks its peers how far their logs go:
//! - if any peer holds an entry a leader wrote (index above 0), the group exists: this
//!   member neither initializes the group, nor calls elections, nor grants votes until it
//!   has applied the read index of a leader (`catch_up`), which covers every committed entry;
//! - if a majority of the members (this one included) hold none, the cluster is new: it
//!   starts as it always has (the lowest id initializes the group).

use super::network::{RaftRpc, RaftRpcReply};
use super::types::{NodeId, Raft};
use crate::directory::{Directory, GatewayRpc};
use agora_replication::group_exists::{find_out, Found};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait for a peer's answer about its log.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether this node's member of the map group is rebuilding (shared with the gateway,
/// which refuses vote requests meanwhile).
#[derive(Debug, Clone, Default)]
pub struct MapRebuild(Arc<AtomicBool>);

impl MapRebuild {
    /// Whether the member may not vote yet.
    pub fn is_rebuilding(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, rebuilding: bool) {
        self.0.store(rebuilding, Ordering::Release);
    }
}

/// How a member starts.
pub(super) struct Guard {
    /// This node's member.
    pub raft: Raft,
    /// This node.
    pub me: NodeId,
    /// The group's members as the cluster file names them (this node included).
    pub members: BTreeMap<NodeId, BasicNode>,
    /// Peers' gateways.
    pub directory: Directory,
    /// Shared with the gateway.
    pub rebuild: MapRebuild,
    /// Becomes `true` once this member has applied a leader's read index.
    pub current: watch::Receiver<bool>,
}

impl Guard {
    /// Starts the member: at once if its store is not new, else once it knows whether the
    /// group exists (and, if it does, only once it has caught up).
    pub(super) fn start(self, new_store: bool) {
        if !new_store {
            if self.is_first() {
                tokio::spawn(async move { self.initialize_if_first().await });
            }
            return;
        }
        self.rebuild.set(true);
        self.raft.runtime_config().elect(false);
        tokio::spawn(async move { self.settle().await });
    }

    async fn settle(mut self) {
        let found = self.ask_peers().await;
        if found == Found::ExistingGroup {
            tracing::warn!(
                node = self.me,
                "this node's disk is new but the shard-map group exists: no votes until it \
                 has caught up"
            );
            while !*self.current.borrow_and_update() {
                if self.current.changed().await.is_err() {
                    return;
                }
            }
        }
        self.rebuild.set(false);
        self.raft.runtime_config().elect(true);
        match found {
            Found::ExistingGroup => tracing::info!(
                node = self.me,
                "shard-map member rebuilt from its peers: it votes again"
            ),
            Found::NewGroup => self.initialize_if_first().await,
        }
    }

    /// Asks the peers until one holds a leader's entry or a majority hold none.
    async fn ask_peers(&self) -> Found {
        let members: Vec<NodeId> = self.members.keys().copied().collect();
        find_out("shard map", self.me, &members, |peer| {
            last_log_index(&self.directory, peer)
        })
        .await
    }

    /// Whether this member has the lowest id (it initializes a new group).
    fn is_first(&self) -> bool {
        self.members.keys().next() == Some(&self.me)
    }

    /// The member with the lowest id initializes the group, unless it already is.
    async fn initialize_if_first(&self) {
        if !self.is_first() {
            return;
        }
        // openraft logs a refused initialize as an error: ask first.
        if self.raft.is_initialized().await.unwrap_or(false) {
            return tracing::debug!("raft group already initialized");
        }
        match self.raft.initialize(self.members.clone()).await {
            Ok(()) => tracing::info!(node = self.me, "raft group initialized"),
            Err(openraft::error::RaftError::APIError(
                openraft::error::InitializeError::NotAllowed(_),
            )) => tracing::debug!("raft group already initialized"),
            Err(e) => tracing::warn!(error = %e, "could not initialize the raft group"),
        }
    }
}

/// The last index in `peer`'s map log (`None`: no answer; `Some(None)`: an empty log).
async fn last_log_index(directory: &Directory, peer: NodeId) -> Option<Option<u64>> {
    let gateway = directory.gateway(peer)?;
    let ask = crate::envelope::encode(&RaftRpc::LastLogIndex).ok()?;
    let answer = gateway
        .call(GatewayRpc::Raft, ask, ASK_TIMEOUT)
        .await
        .ok()?;
    match crate::envelope::decode::<RaftRpcReply>(&answer).ok()? {
        RaftRpcReply::LastLogIndex(last) => Some(last),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_not_rebuilding_until_told() {
        let rebuild = MapRebuild::default();
        assert!(!rebuild.is_rebuilding());
        rebuild.clone().set(true);
        assert!(rebuild.is_rebuilding(), "clones share the flag");
        rebuild.set(false);
        assert!(!rebuild.is_rebuilding());
    }
}
