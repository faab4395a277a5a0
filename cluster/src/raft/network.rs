//! Raft RPCs between nodes, over the Gateway: a request is a bincode-encoded `RaftRpc`
//! sent in `GatewayMsg::Raft` to the peer's gateway, which hands it to its local Raft and
//! answers with an encoded `RaftRpcReply`. A peer without a session is `Unreachable`
//! (openraft backs off and retries).

use super::rebuild::MapRebuild;
use super::types::{NodeId, Raft, TypeConfig};
use crate::directory::Directory;
use crate::directory::GatewayRpc;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// First wait before retrying an unreachable peer; it doubles up to `BACKOFF_MAX`.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// Longest wait before retrying an unreachable peer.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A Raft request on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// A candidate asks for a vote.
    Vote(VoteRequest<NodeId>),
    /// A chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// How far the peer's log goes (asked by a member on a new disk, see `rebuild`).
    LastLogIndex,
}

/// A Raft answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpcReply {
    /// The answer to `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// The answer to `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// The answer to `InstallSnapshot`.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The peer could not take the request (no Raft there, or it did not decode).
    Refused(String),
    /// The answer to `LastLogIndex`: the index of the last entry (`None`: an empty log).
    LastLogIndex(Option<u64>),
}

/// Why a request did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// There is no session to the peer.
    #[error("node {0} is not connected")]
    NotConnected(NodeId),
    /// The call failed or timed out.
    #[error("raft call to node {node} failed: {reason}")]
    Call {
        /// The peer.
        node: NodeId,
        /// What happened.
        reason: String,
    },
    /// The answer was not what was asked for, or did not decode.
    #[error("raft answer from node {node}: {reason}")]
    BadAnswer {
        /// The peer.
        node: NodeId,
        /// What was wrong.
        reason: String,
    },
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    crate::envelope::encode(v).map_err(|e| e.to_string())
}

/// Decodes with the cluster's message limit.
fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    crate::envelope::decode(bytes).map_err(|e| e.to_string())
}

/// Serves one encoded request with the local Raft (the gateway's side); garbage gets a
/// `Refused` answer, never a panic, and so does a vote request while `rebuild` says this
/// member has not caught up.
pub async fn serve(raft: Option<&Raft>, rebuild: &MapRebuild, bytes: &[u8]) -> Vec<u8> {
    let reply = match (raft, decode::<RaftRpc>(bytes)) {
        (None, _) => RaftRpcReply::Refused("this node runs no raft".into()),
        (Some(_), Err(e)) => {
            tracing::warn!(error = %e, "undecodable raft request");
            RaftRpcReply::Refused(format!("undecodable raft request: {e}"))
        }
        (Some(raft), Ok(RaftRpc::AppendEntries(rpc))) => {
            RaftRpcReply::AppendEntries(raft.append_entries(rpc).await)
        }
        (Some(_), Ok(RaftRpc::Vote(_))) if rebuild.is_rebuilding() => {
            RaftRpcReply::Refused("this member is rebuilding its map log: no votes yet".into())
        }
        (Some(raft), Ok(RaftRpc::Vote(rpc))) => RaftRpcReply::Vote(raft.vote(rpc).await),
        (Some(raft), Ok(RaftRpc::InstallSnapshot(rpc))) => {
            RaftRpcReply::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        (Some(raft), Ok(RaftRpc::LastLogIndex)) => {
            RaftRpcReply::LastLogIndex(raft.metrics().borrow().last_log_index)
        }
    };
    encode(&reply).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode a raft answer");
        encode(&RaftRpcReply::Refused(e)).unwrap_or_default()
    })
}

/// Makes a link to each peer.
#[derive(Debug, Clone)]
pub struct Network {
    directory: Directory,
}

impl Network {
    /// Links through `directory`'s gateways.
    pub fn new(directory: Directory) -> Self {
        Self { directory }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerLink {
        PeerLink {
            target,
            directory: self.directory.clone(),
        }
    }
}

/// Sends Raft requests to one peer.
#[derive(Debug, Clone)]
pub struct PeerLink {
    target: NodeId,
    directory: Directory,
}

impl PeerLink {
    async fn call(
        &self,
        rpc: &RaftRpc,
        option: &RPCOption,
    ) -> Result<RaftRpcReply, TransportError> {
        let gateway = self
            .directory
            .gateway(self.target)
            .ok_or(TransportError::NotConnected(self.target))?;
        let bytes = encode(rpc).map_err(|reason| TransportError::Call {
            node: self.target,
            reason,
        })?;
        let ttl = option.hard_ttl().max(std::time::Duration::from_millis(1));
        let answer = gateway
            .call(GatewayRpc::Raft, bytes, ttl)
            .await
            .map_err(|e| TransportError::Call {
                node: self.target,
                reason: e.to_string(),
            })?;
        match decode::<RaftRpcReply>(&answer) {
            Ok(RaftRpcReply::Refused(reason)) | Err(reason) => Err(TransportError::BadAnswer {
                node: self.target,
                reason,
            }),
            Ok(reply) => Ok(reply),
        }
    }

    fn mismatch(&self) -> TransportError {
        TransportError::BadAnswer {
            node: self.target,
            reason: "an answer to another request".into(),
        }
    }
}

/// A failed transport is unreachable (back off); a wrong answer is a network error.
fn transport<E: std::error::Error>(e: TransportError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        TransportError::BadAnswer { .. } => RPCError::Network(NetworkError::new(&e)),
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::successors(Some(BACKOFF_FIRST), |d| {
            Some((*d * 2).min(BACKOFF_MAX))
        }))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&RaftRpc::AppendEntries(rpc), &option).await {
            Ok(RaftRpcReply::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport(self.mismatch())),
            Err(e) => Err(transport(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(&RaftRpc::InstallSnapshot(rpc), &option).await {
            Ok(RaftRpcReply::InstallSnapshot(r)) => {
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
        match self.call(&RaftRpc::Vote(rpc), &option).await {
            Ok(RaftRpcReply::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(transport(self.mismatch())),
            Err(e) => Err(transport(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    #[tokio::test]
    async fn requests_and_answers_round_trip_and_garbage_is_refused() {
        let rpc = RaftRpc::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 4)),
            entries: vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(2, 1), 5),
                payload: EntryPayload::Normal(super::super::types::MapCommand::Move {
                    shard: 3,
                    to: 2,
                }),
            }],
            leader_commit: None,
        });
        let back: RaftRpc = decode(&encode(&rpc).unwrap()).unwrap();
        match back {
            RaftRpc::AppendEntries(r) => assert_eq!(r.entries.len(), 1),
            other => panic!("decoded {other:?}"),
        }
        let reply = serve(None, &MapRebuild::default(), &encode(&rpc).unwrap()).await;
        assert!(matches!(
            decode::<RaftRpcReply>(&reply),
            Ok(RaftRpcReply::Refused(_))
        ));
        assert!(decode::<RaftRpc>(&[0xff, 0x00, 0x13]).is_err());
    }
}
