//! The cluster: node-to-node transport over ractor_cluster, the versioned envelope entity
//! messages travel in, the one remotable Gateway actor per node, the node-scoped directory
//! of peers' gateways, the shard map (agreed through Raft), and the router that sends each
//! request to the shard's owner.

pub mod admission;
pub mod catalog_sync;
pub mod directory;
pub mod envelope;
pub mod frame_guard;
pub mod gateway;
pub mod group_transport;
pub mod handoff;
pub mod identity;
pub mod join_token;
pub mod liveness;
pub mod raft;
pub mod router;
pub mod shard_map;
pub mod tls;
pub mod transport;

/// This node's identity in its cluster.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The cluster's name (the process-group scope).
    pub cluster_name: String,
    /// This node's id.
    pub me: u64,
    /// Every node of the cluster, this one included, by id.
    pub nodes: Vec<agora_cluster_config::cluster::NodeEntry>,
}

impl Membership {
    /// A cluster of one (the embedded `agora dev` mode).
    pub fn single(cluster_name: &str) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            me: 1,
            nodes: Vec::new(),
        }
    }

    /// Ids of every node, sorted (a single node is `[me]`).
    pub fn node_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        if ids.is_empty() {
            ids.push(self.me);
        }
        ids.sort_unstable();
        ids
    }
}
