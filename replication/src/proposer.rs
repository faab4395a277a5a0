//! A shard's proposer: the changes of a shard's entities become entries of its group, at
//! most one proposal in flight per group. Whatever arrives while one is in flight goes into
//! the next entry, so a busy shard pays one Raft round (one replicated append and one
//! fsync on each replica) for many changes, as the writer's group commit does on one node.

use crate::types::{GroupId, NodeId, ShardEntry, ShardRaft, ShardRow};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead the group (the leader it knows of, if any).
    #[error("not the leader of group {group} (leader: {leader:?})")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The group failed or was shut down; the outcome of the change is unknown.
    #[error("group {group} failed: {reason}")]
    Failed {
        /// The group.
        group: GroupId,
        /// What happened.
        reason: String,
    },
}

type Proposal = (Vec<ShardRow>, oneshot::Sender<Result<(), ProposeError>>);

/// Hands changes of one shard to its group.
#[derive(Clone)]
pub struct Proposer {
    group: GroupId,
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts proposing to `raft` (this node's member of `group`), at most `max_rows` rows
    /// per entry.
    pub fn start(group: GroupId, raft: ShardRaft, max_rows: usize) -> Self {
        assert!(max_rows > 0, "an entry carries at least one row");
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(propose_loop(group, raft, rx, max_rows));
        Self { group, queue }
    }

    /// Proposes `rows` (one change) and waits until they are committed by a majority of the
    /// group and applied here.
    pub async fn propose(&self, rows: Vec<ShardRow>) -> Result<(), ProposeError> {
        let stopped = || ProposeError::Failed {
            group: self.group,
            reason: "the proposer stopped".into(),
        };
        let (tx, rx) = oneshot::channel();
        self.queue.send((rows, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn propose_loop(
    group: GroupId,
    raft: ShardRaft,
    mut queue: mpsc::UnboundedReceiver<Proposal>,
    max_rows: usize,
) {
    while let Some(first) = queue.recv().await {
        let mut entry = ShardEntry::default();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some((rows, tx)) = next.take() {
            entry.rows.extend(rows);
            waiting.push(tx);
            if entry.rows.len() < max_rows {
                next = queue.try_recv().ok();
            }
        }
        metrics::histogram!("agora_replication_changes_per_entry").record(waiting.len() as f64);
        let outcome = match raft.client_write(entry).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader {
                    group,
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ProposeError::Failed {
                group,
                reason: e.to_string(),
            }),
        };
        for tx in waiting {
            let _ = tx.send(outcome.clone());
        }
    }
}
