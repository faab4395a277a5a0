//! The admin API's answers, as documented in its OpenAPI document (`crate::admin_openapi`).
//! Fields are declared in alphabetical order: the answers were built with `serde_json::json!`
//! (whose objects sort their keys) and stay byte for byte what they were.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /admin/cluster/members`: who is in the cluster, as this node sees it, and how each
/// node that answered sees each member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembersDto {
    /// This node's id.
    pub me: u64,
    /// The configured nodes and any that joined later, by id.
    pub members: Vec<MemberDto>,
}

/// One member of the cluster.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberDto {
    /// Its cluster (peer) address, when the cluster file names it.
    pub cluster_addr: Option<String>,
    /// Active entities it hosts (known for this node only).
    pub entities: Option<usize>,
    /// Its shop API address, when the cluster file names it.
    pub http_addr: Option<String>,
    /// The node's id.
    pub id: u64,
    /// Its reachability as each node sees it, by node id: this node's `status`, and each
    /// peer's that answered (`?local=true` leaves the peers out). A peer missing here did not
    /// answer within a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"1": "up", "2": "up", "3": "down"}))]
    pub seen_by: Option<std::collections::BTreeMap<u64, String>>,
    /// Shards the shard map gives it.
    pub shards: usize,
    /// `up`, `leaving` (this node, draining), or what this node's failure detector thinks of
    /// a peer (`up`, `suspect`, `down`, …).
    #[schema(example = "up")]
    pub status: String,
}

/// `GET /admin/cluster/shards`: the shard map as this node knows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShardsDto {
    /// The shard map's epoch (one more for every change).
    pub epoch: u64,
    /// The shard map group as this node's member sees it (`null` for a single node).
    pub raft: Option<RaftDto>,
    /// Every shard, in order.
    pub shards: Vec<ShardDto>,
}

/// A Raft group's state as one member sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RaftDto {
    /// Index of the last applied log entry.
    pub last_applied: Option<u64>,
    /// The leader this member knows of.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
}

/// One shard of the map.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShardDto {
    /// Active entities in it (known when this node owns it).
    pub entities: Option<usize>,
    /// The node that owns it.
    pub owner: u64,
    /// The shard's number.
    pub shard: usize,
    /// `serving` when its owner is this node or a reachable peer, else `unavailable`.
    #[schema(example = "serving")]
    pub status: String,
}

/// `GET /admin/entities/{kind}/{id}`: one stored entity, credentials redacted.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityDto {
    /// The last messages it applied (at most 50), for deduplication.
    pub applied_messages: Vec<AppliedMessageDto>,
    /// The shard epoch it was written under.
    pub epoch: u64,
    /// The record's format version.
    pub format: u16,
    /// The entity's id.
    pub id: String,
    /// The entity's kind.
    #[schema(example = "order")]
    pub kind: String,
    /// The node owning its shard (this one).
    pub owner: u64,
    /// Its sequence number: one more for every stored change.
    pub seq: u64,
    /// Its shard.
    pub shard: u32,
    /// Its state (password and token hashes redacted, card numbers shown by their last four
    /// digits).
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    /// When it was last written (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2026-12-06T07:00:00.000Z")]
    pub written_at: String,
}

/// A message an entity applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedMessageDto {
    /// When it was applied (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2026-12-06T07:00:00.000Z")]
    pub at: String,
    /// The message's id.
    pub msg_id: String,
}

/// `GET /admin/dead-letters`: messages given up on, newest 100.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettersDto {
    /// The dead letters.
    pub items: Vec<DeadLetterDto>,
}

/// A message given up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterDto {
    /// When it was given up (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2026-12-06T07:00:00.000Z")]
    pub at: String,
    /// The entity that sent it (`kind:id`).
    pub from: String,
    /// Where it was going: an entity (`kind:id`), or `outside` for a call to a service
    /// outside Agora (the payment gateway, a courier, a notification sink).
    pub to: String,
    /// Its id on this node: `DELETE /admin/dead-letters/{id}` discards it.
    pub id: u64,
    /// The message's id.
    pub msg_id: String,
    /// Why it was given up.
    pub reason: String,
    /// Its topic.
    pub topic: String,
}

/// `POST /admin/shards/{shard}/move` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MoveRequest {
    /// The node to move the shard (or, with replicated shards, its lead) to.
    pub to: u64,
}

/// `POST /admin/shards/{shard}/move`: the shard's new leader (replicated shards) or owner.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MovedDto {
    /// Replicated shards: the lead was transferred.
    Leader(LeaderMovedDto),
    /// Unreplicated shards: the shard's data moved to a new owner.
    Owner(OwnerMovedDto),
}

/// A shard whose lead was transferred.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeaderMovedDto {
    /// The shard's new leader.
    pub leader: u64,
    /// The shard.
    pub shard: u32,
}

/// A shard that moved to a new owner.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OwnerMovedDto {
    /// The shard map's epoch with the move.
    pub epoch: u64,
    /// The shard's new owner.
    pub owner: u64,
    /// The shard.
    pub shard: u32,
}

/// `POST /admin/cluster/join-tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JoinTokenRequest {
    /// The id the new node will run under.
    pub node_id: u64,
}

/// A join token (`agora node --join --join-token …`).
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinTokenDto {
    /// When it expires (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2026-12-06T08:00:00.000Z")]
    pub expires_at: String,
    /// The node it admits.
    pub node_id: u64,
    /// The token.
    pub token: String,
}

/// `POST /admin/cluster/members/{id}/drain`: the node was drained.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DrainedDto {
    /// Shards moved away.
    pub moved_shards: usize,
    /// The node drained (this one).
    pub node: u64,
    /// `drained`.
    #[schema(example = "drained")]
    pub status: String,
}

/// `POST /admin/cluster/members/{id}/remove`: the removal was accepted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RemovingDto {
    /// The node being removed.
    pub node: u64,
    /// `removing`.
    #[schema(example = "removing")]
    pub status: String,
}

/// `GET /admin/console/settings`: what the console offers on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleSettingsDto {
    /// This node's id.
    pub me: u64,
    /// Whether mutating routes (drain, move, remove, dead-letter actions) are enabled.
    pub mutations: bool,
    /// Whether shards are replicated.
    pub replicated: bool,
}

/// `PUT /admin/faults/partition` answer: the peers this node is now cut off from.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionDto {
    /// Peer node ids.
    pub cut_off: Vec<u64>,
}

/// `GET /admin/cluster/replicas`: replicated shards as this node sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicasDto {
    /// Each group this node runs, as its member here sees it.
    pub groups: Vec<GroupDto>,
    /// The shard map group's voters as this node knows them (`null` for a single node).
    pub map_voters: Option<std::collections::BTreeSet<u64>>,
    /// This node's id.
    pub me: u64,
    /// The agreed placement: each shard's replicas, by shard (`null` while the cluster
    /// file's holds).
    pub placement: Option<Vec<Vec<u64>>>,
    /// How far this node's replicas are from the placement.
    pub progress: crate::replica_moves::ReplicaProgress,
    /// Groups whose replica here is being rebuilt from a snapshot.
    pub rebuilding: Vec<u32>,
    /// What replicas here received from peers, by group.
    pub received: Vec<ReceivedDto>,
    /// Nodes removed for good.
    pub removed: std::collections::BTreeSet<u64>,
    /// The placement's version (0: the cluster file's).
    pub version: u64,
}

/// One shard group as its member on this node sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupDto {
    /// Index of the last applied log entry.
    pub applied: Option<u64>,
    /// Members that do not vote yet (catching up).
    pub learners: Vec<u64>,
    /// The leader this member knows of.
    pub leader: Option<u64>,
    /// The shard.
    pub shard: u32,
    /// The current term.
    pub term: u64,
    /// The voting members.
    pub voters: std::collections::BTreeSet<u64>,
}

/// What a replica here received while rebuilding.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivedDto {
    /// Snapshot bytes and chunks received, whether the last chunk came, and log bytes.
    #[schema(value_type = Object)]
    pub received: agora_replication::rebuild_progress::RebuildReceipt,
    /// The shard.
    pub shard: u32,
}

/// What kind of long operation an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// `POST /admin/cluster/members/{id}/drain`: every shard of a node moves away.
    Drain,
    /// `POST /admin/shards/{shard}/move`: a shard (or its lead) moves.
    Move,
    /// `POST /admin/cluster/members/{id}/remove`: a node's replicas are rebuilt elsewhere.
    Remove,
}

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Still running.
    Running,
    /// Done: `result` says what it did.
    Succeeded,
    /// Given up: `problem` says why.
    Failed,
}

/// What an operation's progress counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgressUnit {
    /// Shards moved (a drain, a move).
    Shards,
    /// Replicas of the removed node rebuilt elsewhere (a removal).
    Replicas,
}

/// How far an operation is: `done` of `total` `unit`s.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgressDto {
    /// Units done.
    pub done: usize,
    /// Units in all.
    pub total: usize,
    /// What is counted.
    pub unit: ProgressUnit,
}

/// What a succeeded operation did: what its request answered before operations (200).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OperationResult {
    /// A drain: the shards moved away.
    Drained(DrainedDto),
    /// A move: the shard's new leader or owner.
    Moved(MovedDto),
    /// A removal: the node's replicas were rebuilt elsewhere.
    Removed(RemovingDto),
}

/// Why an operation failed (the problem its request would have answered).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationProblemDto {
    /// What went wrong in this case.
    pub detail: String,
    /// The HTTP status the request would have answered.
    pub status: u16,
    /// A short summary of the kind.
    pub title: String,
    /// The kind of problem: `/problems/<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A long admin operation (drain, move, remove), on the node that accepted it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperationDto {
    /// When it ended (RFC 3339, UTC, milliseconds); `null` while it runs.
    #[schema(format = DateTime, example = "2026-12-06T07:00:05.000Z")]
    pub finished_at: Option<String>,
    /// Its id (opaque): `GET /admin/operations/{id}`.
    #[schema(example = "2-19aa0f3c2e8-1")]
    pub id: String,
    /// What it does.
    pub kind: OperationKind,
    /// The node drained or removed.
    pub node: Option<u64>,
    /// Why it failed (`state` `failed`).
    pub problem: Option<OperationProblemDto>,
    /// How far it is.
    pub progress: ProgressDto,
    /// What it did (`state` `succeeded`).
    pub result: Option<OperationResult>,
    /// The shard moved.
    pub shard: Option<u32>,
    /// When it started (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime, example = "2026-12-06T07:00:00.000Z")]
    pub started_at: String,
    /// Where it stands.
    pub state: OperationState,
    /// Where the shard (or its lead) moves.
    pub to: Option<u64>,
}

/// `GET /admin/operations`: this node's operations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationsDto {
    /// The running operations and the newest finished ones.
    pub items: Vec<OperationDto>,
}
