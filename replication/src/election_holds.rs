//! Why a replica calls no elections, kept in one place. Several reasons hold a replica back
//! at once and end independently: a replica calls elections again only when none is left.
//! (Each used to switch openraft's `elect` flag itself, so the end of one could undo
//! another, or, worse, nothing switched it back: a replica placement first moved away and
//! then kept stayed out of elections for good, and when it alone held the group's newest
//! entries the group never elected a leader again; simulator seed 33 of the membership
//! profile, session 19.) A replica still votes whatever holds it.

use crate::types::{GroupId, ShardRaft};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A reason a replica calls no elections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ElectionHold {
    /// Its disk was replaced: its log is gone until its peers rebuild it, and its terms
    /// would only unsettle the leader it catches up from.
    Rebuilding,
    /// It just stepped aside for another replica: for a few leases, so its own timer does
    /// not take the lead back before the chosen replica wins.
    SteppedAside,
    /// Placement moved it out of the group: the replicas that stay lead, and one of them
    /// takes it out (in a joint configuration a leaving leader that took the lead back each
    /// time would hold the change off forever).
    Leaving,
    /// It just started again on the log it had (a restart): until it hears from a leader,
    /// for at most a few election timeouts. Its election timer would otherwise fire before
    /// the leader's heartbeats reach it again, and its higher term would depose a leader
    /// that was serving (openraft 0.9 has no pre-vote): found by the rolling-restart
    /// benchmark, ten shards re-elected at each node's return.
    Starting,
}

/// The holds on each group's replica on this node.
#[derive(Debug, Clone, Default)]
pub struct ElectionHolds {
    held: Arc<Mutex<BTreeMap<GroupId, BTreeSet<ElectionHold>>>>,
    /// Groups whose replica stands in elections for now whatever holds it (it alone holds
    /// entries the candidates lack), with the release's number.
    released: Arc<Mutex<BTreeMap<GroupId, u64>>>,
    /// The number of the last release.
    releases: Arc<std::sync::atomic::AtomicU64>,
}

impl ElectionHolds {
    /// Puts `hold` on (`on`) or off the replica of `group`, and lets `raft` call elections
    /// exactly when no hold is left (or the replica is released).
    pub fn set(&self, group: GroupId, raft: &ShardRaft, hold: ElectionHold, on: bool) {
        let free = self.update(group, hold, on);
        raft.runtime_config().elect(free || self.is_released(group));
    }

    /// Lets `group`'s replica call elections for `stand`, whatever holds it; the holds apply
    /// again afterwards.
    pub fn release(&self, group: GroupId, raft: &ShardRaft, stand: std::time::Duration) {
        let number = self.begin_release(group);
        raft.runtime_config().elect(true);
        let (holds, raft) = (self.clone(), raft.clone());
        tokio::spawn(async move {
            tokio::time::sleep(stand).await;
            if holds.end_release(group, number) {
                holds.apply(group, &raft);
            }
        });
    }

    /// Records a release of `group`'s replica; its number.
    fn begin_release(&self, group: GroupId) -> u64 {
        let number = self
            .releases
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        let mut released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        released.insert(group, number);
        number
    }

    /// Ends release `number` of `group`'s replica unless a later one replaced it; whether it
    /// ended.
    fn end_release(&self, group: GroupId, number: u64) -> bool {
        let mut released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        let current = released.get(&group) == Some(&number);
        if current {
            released.remove(&group);
        }
        current
    }

    /// Whether `group`'s replica is released to call elections for now.
    pub fn is_released(&self, group: GroupId) -> bool {
        self.released
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&group)
    }

    /// Puts `hold` on or off `group`'s replica; whether no hold is left.
    fn update(&self, group: GroupId, hold: ElectionHold, on: bool) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let holds = held.entry(group).or_default();
        if on {
            holds.insert(hold);
        } else {
            holds.remove(&hold);
        }
        let free = holds.is_empty();
        if free {
            held.remove(&group);
        }
        assert_eq!(
            free,
            held.get(&group).is_none_or(BTreeSet::is_empty),
            "a group is listed exactly when something holds it"
        );
        free
    }

    /// Applies the holds on `group` to a member that just started (openraft starts one
    /// calling elections).
    pub fn apply(&self, group: GroupId, raft: &ShardRaft) {
        raft.runtime_config()
            .elect(self.holds(group).is_empty() || self.is_released(group));
    }

    /// The holds on `group`'s replica.
    pub fn holds(&self, group: GroupId) -> BTreeSet<ElectionHold> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&group).cloned().unwrap_or_default()
    }

    /// Forgets `group` (its replica was removed from this node).
    pub fn forget(&self, group: GroupId) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&group);
        drop(held);
        let mut released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        released.remove(&group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ElectionHold::*;

    #[test]
    fn a_replica_calls_elections_only_when_every_hold_has_ended() {
        let holds = ElectionHolds::default();
        assert!(!holds.update(3, Leaving, true));
        assert!(!holds.update(3, SteppedAside, true));
        // The step-aside quiet ends while the replica is still leaving: it stays out.
        assert!(!holds.update(3, SteppedAside, false));
        assert_eq!(holds.holds(3), [Leaving].into());
        // Placement keeps it after all: nothing holds it any more.
        assert!(holds.update(3, Leaving, false));
        assert!(holds.holds(3).is_empty());
        // Ending a hold that was never on changes nothing, and groups are apart.
        assert!(holds.update(4, Rebuilding, false));
        assert!(!holds.update(5, Rebuilding, true));
        assert!(holds.holds(4).is_empty());
        holds.forget(5);
        assert!(holds.holds(5).is_empty());
    }

    #[test]
    fn a_release_ends_only_when_no_later_one_replaced_it() {
        let holds = ElectionHolds::default();
        assert!(!holds.update(3, Leaving, true));
        let first = holds.begin_release(3);
        assert!(holds.is_released(3) && !holds.is_released(4));
        let second = holds.begin_release(3);
        // The first release's end comes while the second runs: the replica still stands.
        assert!(!holds.end_release(3, first));
        assert!(holds.is_released(3));
        assert!(holds.end_release(3, second));
        assert!(!holds.is_released(3));
        // Its hold outlives the release.
        assert_eq!(holds.holds(3), [Leaving].into());
        let third = holds.begin_release(3);
        holds.forget(3);
        assert!(!holds.is_released(3) && !holds.end_release(3, third));
    }
}
