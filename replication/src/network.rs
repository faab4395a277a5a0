//! RPCs between the members of a group. Every group of a node shares one `GroupTransport`
//! (the cluster's connections): a request is an encoded `GroupRpc` naming its group, served
//! on the peer by `Groups::serve`, which hands it to that group's Raft.

use crate::codec::{decode, encode};
use crate::types::{GroupId, NodeId, ShardTypeConfig};
use async_trait::async_trait;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// First wait before retrying an unreachable peer; it doubles up to `BACKOFF_MAX`.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// Longest wait before retrying an unreachable peer.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Least time a peer has to answer an append or a snapshot chunk.
const MIN_CALL_TTL: Duration = Duration::from_secs(2);

/// A group's Raft request on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum GroupRpc {
    /// Log replication and heartbeats.
    AppendEntries(GroupId, AppendEntriesRequest<ShardTypeConfig>),
    /// A candidate asks for a vote.
    Vote(GroupId, VoteRequest<NodeId>),
    /// A chunk of a snapshot.
    InstallSnapshot(GroupId, InstallSnapshotRequest<ShardTypeConfig>),
    /// How far the peer's log of the group goes (whether the group has started).
    Status(GroupId),
    /// The leader stepped aside for the peer: call an election now.
    Elect(GroupId),
    /// Which nodes the peer's applied (so committed) membership of the group names.
    Members(GroupId),
}

/// A group's Raft answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum GroupRpcReply {
    /// The answer to `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// The answer to `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// The answer to `InstallSnapshot`.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The answer to `Status`: the index of the last entry in the peer's log, if any.
    Status(Option<u64>),
    /// The answer to `Elect`: the election was called.
    Elect,
    /// The peer could not take the request (no such group there, or it did not decode).
    Refused(String),
    /// The answer to `Members`: the peer's applied membership (`None`: it applied none).
    Members(Option<crate::membership::AppliedMembers>),
}

/// Why a call to a peer got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer cannot be reached now (openraft backs off and retries).
    #[error("node {0} is unreachable")]
    Unreachable(NodeId),
    /// The request is larger than the transport carries (nothing was sent).
    #[error("a group request of {bytes} bytes to node {node} is over the limit of {limit}")]
    TooLarge {
        /// The peer.
        node: NodeId,
        /// The encoded request's size.
        bytes: usize,
        /// The largest request the transport carries.
        limit: usize,
    },
    /// The call failed or timed out.
    #[error("group call to node {node} failed: {reason}")]
    Call {
        /// The peer.
        node: NodeId,
        /// What happened.
        reason: String,
    },
}

/// Carries encoded group requests to a peer and its answers back (the cluster's
/// connections in production, the simulator's network in simulation).
#[async_trait]
pub trait GroupTransport: Send + Sync + 'static {
    /// Sends `request` to node `to` and waits up to `timeout` for the answer.
    async fn call(
        &self,
        to: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError>;

    /// Whether a call to `to` would be sent now (a connection to it is up): a node gives
    /// no lead to a peer it knows is gone.
    fn connected(&self, _to: NodeId) -> bool {
        true
    }
}

/// The encoded answer refusing a request for `reason`.
pub fn refuse(reason: &str) -> Vec<u8> {
    encode_reply(&GroupRpcReply::Refused(reason.to_string()))
}

/// Encodes an answer; a failure to encode becomes a `Refused` answer.
pub(crate) fn encode_reply(reply: &GroupRpcReply) -> Vec<u8> {
    encode(reply).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode a group answer");
        encode(&GroupRpcReply::Refused(e.to_string())).unwrap_or_default()
    })
}

/// Makes links from one group to its peers.
#[derive(Clone)]
pub struct GroupNetwork {
    group: GroupId,
    transport: Arc<dyn GroupTransport>,
    max_message_bytes: usize,
}

impl GroupNetwork {
    /// Links of `group` over `transport`, which carries requests of at most
    /// `max_message_bytes`.
    pub fn new(
        group: GroupId,
        transport: Arc<dyn GroupTransport>,
        max_message_bytes: usize,
    ) -> Self {
        assert!(max_message_bytes > 0, "a transport carries some bytes");
        Self {
            group,
            transport,
            max_message_bytes,
        }
    }
}

impl RaftNetworkFactory<ShardTypeConfig> for GroupNetwork {
    type Network = GroupLink;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> GroupLink {
        GroupLink {
            target,
            net: self.clone(),
        }
    }
}

/// Sends one group's requests to one peer.
pub struct GroupLink {
    target: NodeId,
    net: GroupNetwork,
}

/// A failed transport is unreachable (back off); a wrong answer is a network error.
fn transport<E: std::error::Error>(e: TransportError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        TransportError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
        TransportError::Call { .. } | TransportError::TooLarge { .. } => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

/// How many of an append's `entries` fit in `limit` bytes when all of them took `bytes`
/// (at least one: a single entry is within the proposer's bound, far below a frame).
fn entries_that_fit(entries: usize, bytes: usize, limit: usize) -> u64 {
    assert!(bytes > limit, "only an append over the limit is split");
    let fit = entries.saturating_mul(limit) / bytes.max(1);
    u64::try_from(fit.max(1)).unwrap_or(1)
}

impl GroupLink {
    async fn call(
        &self,
        rpc: &GroupRpc,
        option: &RPCOption,
    ) -> Result<GroupRpcReply, TransportError> {
        let fail = |reason: String| TransportError::Call {
            node: self.target,
            reason,
        };
        let bytes = encode(rpc).map_err(|e| fail(e.to_string()))?;
        if bytes.len() > self.net.max_message_bytes {
            return Err(TransportError::TooLarge {
                node: self.target,
                bytes: bytes.len(),
                limit: self.net.max_message_bytes,
            });
        }
        // openraft gives an append the heartbeat interval (50 ms) to answer; a loaded node
        // or a large entry takes longer, and a timed-out append is sent again from the
        // start, which only adds load. Appends and snapshots get at least `MIN_CALL_TTL`.
        let ttl = match rpc {
            GroupRpc::Vote(..) => option.hard_ttl(),
            _ => option.hard_ttl().max(MIN_CALL_TTL),
        }
        .max(Duration::from_millis(1));
        let answer = self.net.transport.call(self.target, bytes, ttl).await?;
        match decode::<GroupRpcReply>(&answer) {
            Ok(GroupRpcReply::Refused(reason)) => Err(fail(reason)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    fn mismatch(&self) -> TransportError {
        TransportError::Call {
            node: self.target,
            reason: "an answer to another request".into(),
        }
    }
}

impl RaftNetwork<ShardTypeConfig> for GroupLink {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::successors(Some(BACKOFF_FIRST), |d| {
            Some((*d * 2).min(BACKOFF_MAX))
        }))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardTypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        match self
            .call(&GroupRpc::AppendEntries(self.net.group, rpc), &option)
            .await
        {
            Ok(GroupRpcReply::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport(self.mismatch())),
            Err(TransportError::TooLarge { bytes, limit, .. }) if entries > 1 => {
                // openraft sends fewer entries at once for the next appends to this peer.
                metrics::counter!("agora_replication_appends_split_total").increment(1);
                let fit = entries_that_fit(entries, bytes, limit);
                tracing::debug!(
                    group = self.net.group,
                    peer = self.target,
                    entries,
                    bytes,
                    fit,
                    "append over the frame limit: sent in smaller parts"
                );
                Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(fit),
                ))
            }
            Err(e) => Err(transport(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ShardTypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(&GroupRpc::InstallSnapshot(self.net.group, rpc), &option)
            .await
        {
            Ok(GroupRpcReply::InstallSnapshot(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport(self.mismatch())),
            Err(e) => Err(transport(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .call(&GroupRpc::Vote(self.net.group, rpc), &option)
            .await
        {
            Ok(GroupRpcReply::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport(self.mismatch())),
            Err(e) => Err(transport(e)),
        }
    }
}
