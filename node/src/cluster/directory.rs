//! The node-scoped directory of peers' gateways. Gateways are found through ractor's process
//! groups (one group per node id, scoped by cluster name), but correctness does not depend on
//! that registry: every envelope names the node it is for, and a gateway refuses envelopes
//! meant for another node or routed under another epoch.

use super::gateway::GatewayMsg;
use ractor::ActorRef;

/// Finds peers' gateways.
#[derive(Debug, Clone)]
pub struct Directory {
    scope: String,
}

impl Directory {
    /// The directory of cluster `cluster_name`.
    pub fn new(cluster_name: &str) -> Self {
        Self {
            scope: format!("agora:{cluster_name}"),
        }
    }

    /// The process-group scope.
    pub fn scope(&self) -> String {
        self.scope.clone()
    }

    /// The process group of node `id`'s gateway.
    pub fn group(id: u64) -> String {
        format!("gateway:{id}")
    }

    /// Ids of the peers whose gateways are connected now (nodes that joined after this one
    /// started included).
    pub fn connected_peers(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = ractor::pg::which_scoped_groups(&self.scope)
            .iter()
            .filter_map(|g| g.strip_prefix("gateway:")?.parse().ok())
            .filter(|id| self.gateway(*id).is_some())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Node `id`'s gateway, if it is connected (a remote actor for a peer).
    pub fn gateway(&self, id: u64) -> Option<ActorRef<GatewayMsg>> {
        ractor::pg::get_scoped_members(&self.scope, &Self::group(id))
            .into_iter()
            .find(|cell| !cell.get_id().is_local())
            .map(ActorRef::from)
    }
}
