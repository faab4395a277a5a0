//! Changing who holds a shard's replicas, with openraft's own membership changes: the
//! group's leader adds each new replica as a learner, waits until it holds the log, then
//! replaces the voters in one joint-consensus change. A replica left out leaves only once a
//! peer has *applied* a membership without it (a committed change), so it never drops data
//! the group may still count on.

use crate::types::{GroupId, NodeId, ShardRaft};
use openraft::{ChangeMembers, LogId, RaftMetrics};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long a new replica may take to catch up before the change is tried again later.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a membership change did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// This node does not lead the group (any more).
    #[error("node {me} does not lead group {group}")]
    NotLeader {
        /// This node.
        me: NodeId,
        /// The group.
        group: GroupId,
    },
    /// A new replica did not catch up in time.
    #[error("node {node} did not catch up with group {group} within {timeout_ms} ms")]
    CatchUpTimeout {
        /// The group.
        group: GroupId,
        /// The new replica.
        node: NodeId,
        /// How long it had.
        timeout_ms: u64,
    },
    /// openraft refused or failed the change.
    #[error("membership change of group {group}: {reason}")]
    Raft {
        /// The group.
        group: GroupId,
        /// What openraft said.
        reason: String,
    },
}

/// A membership a replica has applied: where it is in the log, and its nodes (voters and
/// learners).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedMembers {
    /// The log id of the membership's entry.
    pub log_id: Option<LogId<NodeId>>,
    /// Its voters and learners.
    pub nodes: BTreeSet<NodeId>,
    /// Its voters (of every configuration, in a joint one).
    pub voters: BTreeSet<NodeId>,
}

/// Whether a peer's applied membership `peer` shows that node `me`, whose own latest
/// membership entry is `mine`, has left the group: it is that entry or a later one,
/// committed (applied), and without `me`. A lagging peer's older membership never counts.
pub fn left_group(me: NodeId, mine: Option<LogId<NodeId>>, peer: &AppliedMembers) -> bool {
    peer.log_id.is_some() && peer.log_id >= mine && !peer.nodes.contains(&me)
}

/// Every node of the member's latest membership (joint configurations included): its
/// voters and learners.
pub fn members(m: &RaftMetrics<NodeId, openraft::BasicNode>) -> BTreeSet<NodeId> {
    m.membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect()
}

/// The voters of the member's latest membership (both halves of a joint configuration).
pub fn voters(m: &RaftMetrics<NodeId, openraft::BasicNode>) -> BTreeSet<NodeId> {
    m.membership_config.membership().voter_ids().collect()
}

/// What the leader `me` of a group with metrics `m` should do to reach `desired` voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The voters are already `desired`.
    Settled,
    /// This node is not to keep a replica: it hands the lead to one that is (serving's
    /// balancing does that) and the next leader changes the membership.
    HandOver,
    /// Add these nodes as learners, wait for them, then make `desired` the voters.
    Change {
        /// Nodes to add as learners first.
        learners: BTreeSet<NodeId>,
    },
}

/// The next step toward `desired` for leader `me` (pure: unit-tested).
pub fn next_step(
    me: NodeId,
    m: &RaftMetrics<NodeId, openraft::BasicNode>,
    desired: &BTreeSet<NodeId>,
) -> Step {
    assert!(!desired.is_empty(), "a group keeps at least one replica");
    let joint = m.membership_config.membership().get_joint_config().len() > 1;
    let present = members(m);
    // Settled only without stray learners: a learner added for a node that placement then
    // dropped (removed while it caught up) would otherwise stay in the group for good, and
    // its replica, which leaves only once the group has applied a membership without it,
    // would never go (membership seed 58, session 28).
    if !joint && voters(m) == *desired && present == *desired {
        return Step::Settled;
    }
    if !desired.contains(&me) {
        return Step::HandOver;
    }
    Step::Change {
        learners: desired.difference(&present).copied().collect(),
    }
}

/// Moves `raft`'s group (led by `me`) to the voters `desired`: new nodes join as learners
/// and catch up (at most `catch_up` each, and only while `wanted` still places them), then
/// one joint change replaces the voters and drops the nodes left out, learners included.
/// Returns whether anything changed.
pub async fn change_voters(
    me: NodeId,
    group: GroupId,
    raft: &ShardRaft,
    desired: &BTreeSet<NodeId>,
    (catch_up, wanted): (Duration, &(dyn Fn(NodeId) -> bool + Sync)),
) -> Result<bool, MembershipError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(me) {
        return Err(MembershipError::NotLeader { me, group });
    }
    let learners = match next_step(me, &m, desired) {
        Step::Settled => return Ok(false),
        Step::HandOver => return Err(MembershipError::NotLeader { me, group }),
        Step::Change { learners } => learners,
    };
    let raft_err = |e: &dyn std::fmt::Display| MembershipError::Raft {
        group,
        reason: e.to_string(),
    };
    for node in &learners {
        raft.add_learner(*node, openraft::BasicNode::default(), false)
            .await
            .map_err(|e| raft_err(&e))?;
    }
    // Every replica that is to become a voter holds the log first: those just added, and
    // learners an earlier attempt added that may not have caught up then.
    let m = raft.metrics().borrow().clone();
    let entry = m.membership_config.log_id().unwrap_or_default();
    for node in desired.difference(&voters(&m)) {
        wait_for_learner(group, raft, (*node, entry), (catch_up, wanted)).await?;
        tracing::info!(group, node, "new replica caught up");
    }
    if voters(&m) != *desired || m.membership_config.membership().get_joint_config().len() > 1 {
        raft.change_membership(ChangeMembers::ReplaceAllVoters(desired.clone()), false)
            .await
            .map_err(|e| raft_err(&e))?;
    }
    let stray: BTreeSet<NodeId> = members(&raft.metrics().borrow().clone())
        .difference(desired)
        .copied()
        .collect();
    if !stray.is_empty() {
        raft.change_membership(ChangeMembers::RemoveNodes(stray.clone()), false)
            .await
            .map_err(|e| raft_err(&e))?;
        tracing::info!(group, learners = ?stray, "learners placed elsewhere dropped");
    }
    let now = voters(&raft.metrics().borrow().clone());
    tracing::info!(group, voters = ?now, "group membership changed");
    Ok(true)
}

/// Waits (at most `catch_up`) until the leader has replicated to learner `node` the
/// membership entry `entry` that lists it, so that it holds the log before it may become a
/// voter.
///
/// openraft's own blocking `add_learner` is not that wait: it calls a learner "up to date"
/// when it lags by at most `replication_lag_threshold` entries (5,000 by default), which a
/// learner that has received nothing at all does whenever the log is shorter. A blank
/// learner then became a voter at once (the log said "caught up" the moment it was added),
/// and when a second replica's disk was lost the group had no majority that held its
/// entries: it stayed without a leader for good (simulator, membership seed 23, session 28).
async fn wait_for_learner(
    group: GroupId,
    raft: &ShardRaft,
    (node, entry): (NodeId, LogId<NodeId>),
    (catch_up, wanted): (Duration, &(dyn Fn(NodeId) -> bool + Sync)),
) -> Result<(), MembershipError> {
    let me = raft.metrics().borrow().id;
    let timeout = MembershipError::CatchUpTimeout {
        group,
        node,
        timeout_ms: catch_up.as_millis() as u64,
    };
    let deadline = tokio::time::Instant::now() + catch_up;
    loop {
        // In slices, so that a learner placement dropped meanwhile (its node removed while
        // it caught up) is given up within a second, not after the whole `catch_up`.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let caught_up = raft
            .wait(Some(left.min(CATCH_UP_LOOK_EVERY)))
            .metrics(
                |m| learner_progress(m, node, entry) != LearnerProgress::Behind,
                "the new learner holds the entry that lists it",
            )
            .await;
        return match caught_up.map(|m| learner_progress(&m, node, entry)) {
            Ok(LearnerProgress::HoldsEntry) => Ok(()),
            Ok(LearnerProgress::NotLeading) => Err(MembershipError::NotLeader { me, group }),
            Ok(LearnerProgress::Removed) => Err(MembershipError::Raft {
                group,
                reason: format!("node {node} left the group while it caught up"),
            }),
            Ok(LearnerProgress::Behind) | Err(openraft::metrics::WaitError::Timeout(..)) => {
                if left.is_zero() {
                    Err(timeout)
                } else if !wanted(node) {
                    Err(MembershipError::Raft {
                        group,
                        reason: format!("node {node} is no longer placed here while it caught up"),
                    })
                } else {
                    continue;
                }
            }
            Err(e) => Err(MembershipError::Raft {
                group,
                reason: e.to_string(),
            }),
        };
    }
}

/// How often a wait for a learner looks whether placement still wants it.
const CATCH_UP_LOOK_EVERY: Duration = Duration::from_secs(1);

/// Where a learner being added stands, as its group's leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnerProgress {
    /// The leader has replicated to it the entry that added it (or a later one).
    HoldsEntry,
    /// It does not hold that entry yet.
    Behind,
    /// This node no longer leads the group: its view of the learner says nothing.
    NotLeading,
    /// A later membership left it out.
    Removed,
}

/// How far learner `node`, added by the membership entry `entry`, has caught up, from
/// the leader's metrics `m` (pure: unit-tested).
fn learner_progress(
    m: &RaftMetrics<NodeId, openraft::BasicNode>,
    node: NodeId,
    entry: LogId<NodeId>,
) -> LearnerProgress {
    let Some(replication) = &m.replication else {
        return LearnerProgress::NotLeading;
    };
    if m.membership_config.log_id() >= &Some(entry)
        && m.membership_config.membership().get_node(&node).is_none()
    {
        return LearnerProgress::Removed;
    }
    match replication.get(&node) {
        Some(matched) if *matched >= Some(entry) => LearnerProgress::HoldsEntry,
        _ => LearnerProgress::Behind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{BasicNode, LogId, Membership, StoredMembership};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn metrics(
        configs: Vec<BTreeSet<NodeId>>,
        learners: &[NodeId],
    ) -> RaftMetrics<NodeId, BasicNode> {
        let mut nodes: BTreeMap<NodeId, BasicNode> = BTreeMap::new();
        for id in configs.iter().flatten().chain(learners) {
            nodes.insert(*id, BasicNode::default());
        }
        let membership = Membership::new(configs, nodes);
        let mut m = RaftMetrics::new_initial(1);
        m.membership_config = Arc::new(StoredMembership::new(Some(LogId::default()), membership));
        m
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_next_step_adds_learners_hands_over_or_rests() {
        let m = metrics(vec![set(&[1, 2, 3])], &[]);
        assert_eq!(next_step(1, &m, &set(&[1, 2, 3])), Step::Settled);
        assert_eq!(
            next_step(1, &m, &set(&[1, 2, 4])),
            Step::Change {
                learners: set(&[4])
            }
        );
        // The leader itself is to go: it hands over first.
        assert_eq!(next_step(3, &m, &set(&[1, 2, 4])), Step::HandOver);
        // A learner already present is not added again.
        let m = metrics(vec![set(&[1, 2, 3])], &[4]);
        assert_eq!(
            next_step(1, &m, &set(&[1, 2, 4])),
            Step::Change { learners: set(&[]) }
        );
        // A joint configuration is never settled, even if its new half is the target.
        let m = metrics(vec![set(&[1, 2, 3]), set(&[1, 2, 4])], &[]);
        assert_eq!(
            next_step(1, &m, &set(&[1, 2, 4])),
            Step::Change { learners: set(&[]) }
        );
        // A learner placement no longer wants (its node was removed while it caught up)
        // is dropped: the group is not settled while it stays.
        let m = metrics(vec![set(&[1, 2, 3])], &[4]);
        assert_eq!(
            next_step(1, &m, &set(&[1, 2, 3])),
            Step::Change { learners: set(&[]) }
        );
        // Shrinking needs no learner.
        let m = metrics(vec![set(&[1, 2, 3, 4])], &[]);
        assert_eq!(
            next_step(1, &m, &set(&[1, 2, 4])),
            Step::Change { learners: set(&[]) }
        );
    }

    #[test]
    fn only_a_later_membership_without_me_means_i_left() {
        let id = |term, index| Some(LogId::new(openraft::CommittedLeaderId::new(term, 1), index));
        let view = |log_id, nodes: &[NodeId]| AppliedMembers {
            log_id,
            nodes: set(nodes),
            voters: set(nodes),
        };
        // The group moved on without node 4.
        assert!(left_group(4, id(2, 10), &view(id(2, 12), &[1, 2, 5])));
        // A lagging peer (a new learner still at an older membership) proves nothing.
        assert!(!left_group(4, id(2, 10), &view(id(1, 3), &[1, 2, 3])));
        // A later membership that still names node 4.
        assert!(!left_group(4, id(2, 10), &view(id(3, 14), &[1, 2, 4])));
        // The same entry as mine, applied by the peer: committed, and without node 4.
        assert!(left_group(4, id(2, 10), &view(id(2, 10), &[1, 2])));
        // A peer that applied no membership proves nothing.
        assert!(!left_group(4, None, &view(None, &[])));
    }

    #[test]
    fn a_learner_that_received_nothing_has_not_caught_up_however_short_the_log() {
        let entry = LogId::new(openraft::CommittedLeaderId::new(2, 1), 12);
        let mut m = metrics(vec![set(&[1, 2, 3])], &[4]);
        m.membership_config = Arc::new(StoredMembership::new(
            Some(entry),
            m.membership_config.membership().clone(),
        ));
        m.last_log_index = Some(14);
        // openraft's blocking add_learner called this learner up to date: it lags by 14
        // entries, under its 5,000-entry threshold. It holds nothing.
        m.replication = Some(BTreeMap::from([(2, Some(entry)), (4, None)]));
        assert_eq!(learner_progress(&m, 4, entry), LearnerProgress::Behind);
        let before = LogId::new(openraft::CommittedLeaderId::new(2, 1), 11);
        m.replication = Some(BTreeMap::from([(4, Some(before))]));
        assert_eq!(learner_progress(&m, 4, entry), LearnerProgress::Behind);
        m.replication = Some(BTreeMap::from([(4, Some(entry))]));
        assert_eq!(learner_progress(&m, 4, entry), LearnerProgress::HoldsEntry);
        // Deposed: this node's view of the learner says nothing.
        m.replication = None;
        assert_eq!(learner_progress(&m, 4, entry), LearnerProgress::NotLeading);
        // A later membership without it.
        let mut m = metrics(vec![set(&[1, 2, 3])], &[]);
        m.membership_config = Arc::new(StoredMembership::new(
            Some(LogId::new(openraft::CommittedLeaderId::new(2, 1), 13)),
            m.membership_config.membership().clone(),
        ));
        m.replication = Some(BTreeMap::new());
        assert_eq!(learner_progress(&m, 4, entry), LearnerProgress::Removed);
    }
}
