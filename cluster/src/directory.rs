//! The node-scoped directory of peers' gateways, and the one way to call them.
//!
//! In production a peer's gateway is a ractor_cluster remote actor, found through ractor's
//! process groups (one group per node id, scoped by cluster name). In the simulator several
//! nodes share one process, and ractor's registry is process-global, so the simulator hands
//! the node a set of links instead (`PeerLinks`) that carry the same encoded requests over
//! simulated TCP. Correctness never depends on the registry: every envelope names the node
//! it is for, and a gateway refuses envelopes meant for another node or another epoch.

use super::gateway::GatewayMsg;
use async_trait::async_trait;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// One of the gateway's remote calls (each takes and answers encoded bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayRpc {
    /// An envelope for an entity of this node.
    Deliver,
    /// Catalog facts since a version (also the heartbeat).
    CatalogSince,
    /// A Raft request of the shard-map group.
    Raft,
    /// A shard streamed by its previous owner.
    InstallShard,
    /// A map command to propose.
    Propose,
    /// A node asking to join.
    Join,
    /// A request to move one of this node's shards.
    RequestMove,
    /// Discard a shard installed by a handoff that was aborted.
    DiscardShard,
    /// A Raft request of a shard's replication group.
    Group,
    /// The shard-map group's read index, from its leader.
    ReadIndex,
}

impl GatewayRpc {
    /// Every call, in wire order.
    pub const ALL: [GatewayRpc; 10] = [
        GatewayRpc::Deliver,
        GatewayRpc::CatalogSince,
        GatewayRpc::Raft,
        GatewayRpc::InstallShard,
        GatewayRpc::Propose,
        GatewayRpc::Join,
        GatewayRpc::RequestMove,
        GatewayRpc::DiscardShard,
        GatewayRpc::Group,
        GatewayRpc::ReadIndex,
    ];

    /// The gateway message carrying `bytes`, answered on `port`.
    pub fn message(self, bytes: Vec<u8>, port: RpcReplyPort<Vec<u8>>) -> GatewayMsg {
        match self {
            GatewayRpc::Deliver => GatewayMsg::Deliver(bytes, port),
            GatewayRpc::CatalogSince => GatewayMsg::CatalogSince(bytes, port),
            GatewayRpc::Raft => GatewayMsg::Raft(bytes, port),
            GatewayRpc::InstallShard => GatewayMsg::InstallShard(bytes, port),
            GatewayRpc::Propose => GatewayMsg::Propose(bytes, port),
            GatewayRpc::Join => GatewayMsg::Join(bytes, port),
            GatewayRpc::RequestMove => GatewayMsg::RequestMove(bytes, port),
            GatewayRpc::DiscardShard => GatewayMsg::DiscardShard(bytes, port),
            GatewayRpc::Group => GatewayMsg::Group(bytes, port),
            GatewayRpc::ReadIndex => GatewayMsg::ReadIndex(bytes, port),
        }
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The call of a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// Why a call to a peer's gateway failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerCallError {
    /// No answer within the call's time.
    #[error("timed out")]
    Timeout,
    /// The peer could not be reached or dropped the call.
    #[error("{0}")]
    Failed(String),
}

/// A link to one peer's gateway that is not a ractor actor (the simulator's network).
#[async_trait]
pub trait PeerLink: Send + Sync {
    /// Sends one call and waits for its answer.
    async fn call(
        &self,
        rpc: GatewayRpc,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerCallError>;
}

/// The links of one node to its peers (the simulator's network).
pub trait PeerLinks: Send + Sync {
    /// The link to node `id`, if the network knows it.
    fn link(&self, id: u64) -> Option<Arc<dyn PeerLink>>;
    /// Ids of the peers this node can try to reach, ascending.
    fn peers(&self) -> Vec<u64>;
}

/// A peer's gateway: where calls go.
#[derive(Clone)]
pub enum PeerGateway {
    /// A gateway actor (remote through ractor_cluster, or this node's own).
    Actor(ActorRef<GatewayMsg>),
    /// A simulated link.
    Link(Arc<dyn PeerLink>),
}

impl PeerGateway {
    /// Sends `bytes` as `rpc` and waits up to `timeout` for the answer.
    pub async fn call(
        &self,
        rpc: GatewayRpc,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerCallError> {
        match self {
            PeerGateway::Actor(actor) => {
                match actor
                    .call(move |port| rpc.message(bytes, port), Some(timeout))
                    .await
                {
                    Ok(CallResult::Success(answer)) => Ok(answer),
                    Ok(CallResult::Timeout) => Err(PeerCallError::Timeout),
                    Ok(CallResult::SenderError) => {
                        Err(PeerCallError::Failed("the gateway dropped the call".into()))
                    }
                    Err(e) => Err(PeerCallError::Failed(e.to_string())),
                }
            }
            PeerGateway::Link(link) => link.call(rpc, bytes, timeout).await,
        }
    }
}

#[derive(Clone)]
enum Lookup {
    Groups {
        scope: String,
        identities: Arc<crate::identity::Identities>,
    },
    Links(Arc<dyn PeerLinks>),
}

/// Finds peers' gateways.
#[derive(Clone)]
pub struct Directory {
    lookup: Lookup,
    /// Peers this node is cut off from (fault injection): their gateways are not found.
    cut_off: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.lookup {
            Lookup::Groups { scope, .. } => write!(f, "Directory(groups {scope})"),
            Lookup::Links(_) => write!(f, "Directory(links)"),
        }
    }
}

impl Directory {
    /// The directory of cluster `cluster_name`, through ractor's process groups.
    pub fn new(cluster_name: &str) -> Self {
        Self {
            lookup: Lookup::Groups {
                scope: format!("agora:{cluster_name}"),
                identities: Arc::default(),
            },
            cut_off: Arc::default(),
        }
    }

    /// A directory over explicit links (the simulator).
    pub fn with_links(links: Arc<dyn PeerLinks>) -> Self {
        Self {
            lookup: Lookup::Links(links),
            cut_off: Arc::default(),
        }
    }

    /// The process-group scope (`None` over explicit links).
    pub fn scope(&self) -> Option<String> {
        match &self.lookup {
            Lookup::Groups { scope, .. } => Some(scope.clone()),
            Lookup::Links(_) => None,
        }
    }

    /// Cuts this node off from `peers` (fault injection; empty heals): it no longer finds
    /// their gateways, so it neither calls them nor counts them as connected. A partition
    /// cuts both sides.
    pub fn cut_off(&self, peers: std::collections::BTreeSet<u64>) {
        if let Ok(mut cut) = self.cut_off.lock() {
            *cut = peers;
        }
    }

    /// The peers this node is cut off from.
    pub fn cut_off_peers(&self) -> std::collections::BTreeSet<u64> {
        self.cut_off.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn is_cut_off(&self, id: u64) -> bool {
        self.cut_off.lock().is_ok_and(|c| c.contains(&id))
    }

    /// The proven identities of the sessions (the transport fills them; unused over links).
    pub fn identities(&self) -> Arc<crate::identity::Identities> {
        match &self.lookup {
            Lookup::Groups { identities, .. } => identities.clone(),
            Lookup::Links(_) => Arc::default(),
        }
    }

    /// The process group of node `id`'s gateway.
    pub fn group(id: u64) -> String {
        format!("gateway:{id}")
    }

    /// Ids of the peers whose gateways are connected now (nodes that joined after this one
    /// started included).
    pub fn connected_peers(&self) -> Vec<u64> {
        match &self.lookup {
            Lookup::Groups { scope, .. } => {
                let mut ids: Vec<u64> = ractor::pg::which_scoped_groups(scope)
                    .iter()
                    .filter_map(|g| g.strip_prefix("gateway:")?.parse().ok())
                    .filter(|id| self.gateway(*id).is_some())
                    .collect();
                ids.sort_unstable();
                ids
            }
            Lookup::Links(links) => links
                .peers()
                .into_iter()
                .filter(|id| !self.is_cut_off(*id))
                .collect(),
        }
    }

    /// Node `id`'s gateway, if it is connected: a member of node `id`'s group that lives on
    /// a session proven to be node `id` (a peer joining another node's group is ignored).
    pub fn gateway(&self, id: u64) -> Option<PeerGateway> {
        if self.is_cut_off(id) {
            return None;
        }
        match &self.lookup {
            Lookup::Groups { scope, identities } => {
                ractor::pg::get_scoped_members(scope, &Self::group(id))
                    .into_iter()
                    .find(|cell| {
                        let actor = cell.get_id();
                        !actor.is_local() && identities.is(actor.node(), id)
                    })
                    .map(|cell| PeerGateway::Actor(ActorRef::from(cell)))
            }
            Lookup::Links(links) => links.link(id).map(PeerGateway::Link),
        }
    }
}
