//! The one-owner and one-leader checkers, during the run: every time a node lets a shard's
//! entities run it says so (`ServedLog`), with the term it serves under: a replicated
//! shard's group term (its leadership reports it), an unreplicated shard's owner epoch (its
//! entities report each message they take). Raft gives a term at most one leader, leases keep
//! a deposed leader from serving once a newer term could, and a handoff freezes the old
//! owner before the map moves the shard on: so for each shard, the terms served must never go
//! back, and one term must be served by one node. Events arrive in simulated-time order (the
//! simulation is one thread).

use agora_replication::{GroupId, NodeId, ServedLog};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Most violations kept (the first ones tell the story).
const MAX_KEPT: usize = 20;

#[derive(Default)]
struct Seen {
    /// Per shard: the newest term served, and by whom.
    newest: BTreeMap<GroupId, (u64, NodeId)>,
    violations: Vec<String>,
    events: u64,
}

/// What every node of a run reports it served.
#[derive(Clone)]
pub struct ServedRecorder {
    seen: Arc<Mutex<Seen>>,
    /// What a term is in this run's messages: "term" (replicated) or "epoch".
    term: &'static str,
}

impl ServedRecorder {
    /// A recorder for a run whose shards are `replicated` (terms) or not (epochs).
    pub fn new(replicated: bool) -> Self {
        Self {
            seen: Arc::default(),
            term: if replicated { "term" } else { "epoch" },
        }
    }

    /// The invariant its violations break: one leader per term, or one owner per epoch.
    pub fn invariant(&self) -> &'static str {
        if self.term == "term" {
            "one-leader"
        } else {
            "one-owner"
        }
    }

    /// The log a node reports to (one recorder for every node of the run; each event names
    /// its node).
    pub fn for_node(&self) -> Arc<dyn ServedLog> {
        Arc::new(self.clone())
    }

    /// The violations seen, and how many serve events were checked.
    pub fn violations(&self) -> (Vec<String>, u64) {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.violations.clone(), seen.events)
    }
}

impl ServedLog for ServedRecorder {
    fn served(&self, node: NodeId, shard: GroupId, term: u64) {
        let unit = self.term;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.events += 1;
        let problem = match seen.newest.get(&shard).copied() {
            Some((newest, by)) if term < newest => Some(format!(
                "shard {shard}: node {node} served under {unit} {term} after node {by} served under {unit} {newest}"
            )),
            Some((newest, by)) if term == newest && node != by => Some(format!(
                "shard {shard}: nodes {by} and {node} both served under {unit} {term}"
            )),
            _ => None,
        };
        match problem {
            Some(p) if seen.violations.len() < MAX_KEPT => seen.violations.push(p),
            Some(_) => {}
            None => {
                seen.newest.insert(shard, (term, node));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_term_or_a_second_node_in_a_term_is_caught() {
        let rec = ServedRecorder::new(true);
        let log = rec.for_node();
        log.served(1, 0, 3);
        log.served(1, 0, 3);
        log.served(2, 0, 4);
        log.served(2, 1, 1);
        assert!(rec.violations().0.is_empty());
        log.served(1, 0, 3);
        log.served(3, 0, 4);
        let (found, events) = rec.violations();
        assert_eq!(events, 6);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("term 3 after node 2 served under term 4"));
        assert!(found[1].contains("nodes 2 and 3 both served under term 4"));
    }

    #[test]
    fn an_unreplicated_run_checks_owner_epochs_as_one_owner() {
        let rec = ServedRecorder::new(false);
        let log = rec.for_node();
        log.served(1, 5, 1);
        log.served(2, 5, 2);
        log.served(1, 5, 1);
        let (found, _) = rec.violations();
        assert_eq!(rec.invariant(), "one-owner");
        assert_eq!(
            found,
            vec!["shard 5: node 1 served under epoch 1 after node 2 served under epoch 2"]
        );
    }
}
