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
}

/// The holds on each group's replica on this node.
#[derive(Debug, Clone, Default)]
pub struct ElectionHolds {
    held: Arc<Mutex<BTreeMap<GroupId, BTreeSet<ElectionHold>>>>,
}

impl ElectionHolds {
    /// Puts `hold` on (`on`) or off the replica of `group`, and lets `raft` call elections
    /// exactly when no hold is left.
    pub fn set(&self, group: GroupId, raft: &ShardRaft, hold: ElectionHold, on: bool) {
        let free = self.update(group, hold, on);
        raft.runtime_config().elect(free);
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
        raft.runtime_config().elect(self.holds(group).is_empty());
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
}
