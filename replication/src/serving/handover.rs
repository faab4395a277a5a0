//! Moving a shard's lead between replicas: balancing (each group's leader steps aside for
//! placement's preferred leader once it is caught up), an operator's transfer, and a
//! stopping node's hand-off of every lead it holds. openraft 0.9 has no leader transfer,
//! so a move is: quiesce the shard, stop serving it, keep out of the group's elections for
//! a while, and ask the target to call an election, which it wins with this node's vote.

use super::{GroupMetrics, LeadershipEvents, Serving};
use crate::election_holds::ElectionHold;
use crate::types::{GroupId, NodeId, ShardRaft};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where leaders should be.
pub struct Balancing {
    /// The node's groups (to ask a follower to call an election).
    pub groups: crate::Groups,
}

/// A step aside: in which term, and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Handover {
    term: u64,
    at: Instant,
    to: NodeId,
}

/// How long a leader that stepped aside waits for the new leader before serving again.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// Longest a lead that moves waits for its shard's work in progress to commit and for the
/// replica it hands over to to hold every entry.
const QUIESCE_MAX: Duration = Duration::from_millis(500);
/// Least time between two balancing handovers of one group.
const HANDOVER_EVERY: Duration = Duration::from_secs(5);

impl Serving {
    /// Starts balancing leaders: each group's leader steps aside for its preferred leader
    /// once that one is caught up.
    pub fn balance(&self, balancing: Balancing) {
        let _ = self.inner.balancing.set(balancing);
    }

    /// The replica this node stepped aside for in `shard`, while it waits for it to lead.
    pub fn handed_to(&self, shard: GroupId) -> Option<NodeId> {
        let handovers = self.inner.handovers.lock().ok()?;
        let h = handovers.get(&shard)?;
        (h.at.elapsed() < HANDOVER_WAIT).then_some(h.to)
    }

    /// Whether this node stepped aside in `term` of `shard` recently (it waits for the
    /// follower it chose rather than serve again at once).
    pub(super) fn stepped_aside(&self, shard: GroupId, term: u64) -> bool {
        self.inner.handovers.lock().is_ok_and(|h| {
            h.get(&shard)
                .is_some_and(|h| h.term == term && h.at.elapsed() < HANDOVER_WAIT)
        })
    }

    /// Sets where each group's replicas should be (`placement[shard]`, the preferred leader
    /// first): a leader steps aside for the preferred one, and a leader left out steps aside
    /// for any replica that stays.
    pub fn set_placement(&self, placement: &[Vec<NodeId>]) {
        if let Ok(mut desired) = self.inner.desired.write() {
            *desired = placement
                .iter()
                .enumerate()
                .map(|(shard, nodes)| (shard as GroupId, nodes.clone()))
                .collect();
        }
    }

    /// The replicas placement wants for `shard`, the preferred leader first.
    pub fn desired(&self, shard: GroupId) -> Option<Vec<NodeId>> {
        self.inner.desired.read().ok()?.get(&shard).cloned()
    }

    /// The replica this leader should step aside for now, if any: the preferred leader, or,
    /// when this node is to leave the group, any replica that stays; always a voter holding
    /// every entry of the log, and no handover of the group was tried lately.
    pub(super) fn balance_target(&self, shard: GroupId, m: &GroupMetrics) -> Option<NodeId> {
        let balancing = self.inner.balancing.get()?;
        // A replica that just handed this node the lead is leaving (a SIGTERM), or an
        // operator moved the lead here: handing it back at once would undo that.
        if balancing.groups.asked_to_lead_within(shard, HANDOVER_EVERY) {
            return None;
        }
        let desired = self.desired(shard)?;
        let me = self.inner.me;
        let voters = crate::membership::voters(m);
        // A peer whose connection is gone is no target, however caught up it looks: an idle
        // group's log does not move, so a replica killed a moment ago still "holds every
        // entry" (the failover bench: a lead handed to a node killed 430 ms before, and the
        // shard unserved for the two-second handover wait).
        let eligible = |n: &&NodeId| {
            **n != me && voters.contains(n) && caught_up(m, **n) && balancing.groups.connected(**n)
        };
        let target = if desired.contains(&me) {
            desired.first().filter(eligible).copied()
        } else {
            desired.iter().find(eligible).copied()
        }?;
        let recent = self.inner.handovers.lock().ok()?.get(&shard).copied();
        recent
            .is_none_or(|h| h.at.elapsed() >= HANDOVER_EVERY)
            .then_some(target)
    }

    /// Stops serving `shard` and asks `to` (a caught-up follower) to call an election now:
    /// its vote request reaches this node, whose own lease on the others has lapsed, so it
    /// wins with this node's vote in one round.
    pub(super) async fn step_aside(
        &self,
        shard: GroupId,
        m: &GroupMetrics,
        to: NodeId,
        events: &dyn LeadershipEvents,
    ) {
        let Some(balancing) = self.inner.balancing.get() else {
            return;
        };
        if let Ok(mut h) = self.inner.handovers.lock() {
            let handover = Handover {
                term: m.current_term,
                at: Instant::now(),
                to,
            };
            h.insert(shard, handover);
        }
        let quiet = self.quiesce(shard, to, events).await;
        tracing::info!(
            shard,
            to,
            term = m.current_term,
            quiet,
            "stepping aside for another replica"
        );
        self.stop_serving(shard, events).await;
        self.keep_out_of_elections(shard, &balancing.groups);
        let asked = balancing.groups.ask_to_elect(shard, to).await;
        metrics::counter!("agora_replication_handovers_total").increment(1);
        match asked {
            crate::groups::ElectAsk::Called => {}
            crate::groups::ElectAsk::Refused => {
                tracing::debug!(shard, to, "the replica did not call an election");
            }
            // Never sent (its connection went while the shard quiesced): it calls no
            // election on this ask, so this node, still the group's leader, serves again at
            // once instead of waiting out the handover for a leader that is not coming.
            crate::groups::ElectAsk::NotSent => {
                tracing::info!(shard, to, "the replica is gone: serving the shard again");
                if let Ok(mut h) = self.inner.handovers.lock() {
                    h.remove(&shard);
                }
                balancing
                    .groups
                    .hold_elections(shard, ElectionHold::SteppedAside, false);
            }
        }
    }

    /// Before a lead moves to `to`: the shard's entities finish what they hold and stop,
    /// their changes commit, and `to` comes to hold every entry (else this node would refuse
    /// it the vote it needs). At most `QUIESCE_MAX`; whether all that happened.
    async fn quiesce(&self, shard: GroupId, to: NodeId, events: &dyn LeadershipEvents) -> bool {
        let started = Instant::now();
        let _ = tokio::time::timeout(QUIESCE_MAX, events.quiesce(shard)).await;
        let (Some(lead), Some(raft)) = (self.lead(shard), self.raft_of(shard)) else {
            return false;
        };
        let quiet = loop {
            if lead.proposer.idle() && caught_up(&raft.metrics().borrow(), to) {
                break true;
            }
            if started.elapsed() >= QUIESCE_MAX || lead.proposer.failed() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        metrics::histogram!("agora_replication_handover_quiesce_seconds")
            .record(started.elapsed().as_secs_f64());
        quiet
    }

    /// Whether a connection to `peer` is up (always, before balancing starts).
    fn connected(&self, peer: NodeId) -> bool {
        self.inner
            .balancing
            .get()
            .is_none_or(|b| b.groups.connected(peer))
    }

    /// This node's member of `shard`'s group, if it runs one.
    fn raft_of(&self, shard: GroupId) -> Option<ShardRaft> {
        self.inner
            .rafts
            .read()
            .ok()
            .and_then(|r| r.get(&shard).cloned())
    }

    /// After stepping aside this node calls no election of `shard` for a while (it still
    /// votes): openraft 0.9 has no leader transfer, and the target's first election is
    /// refused while the replicas' leases run, so the old leader's own timer would often win
    /// the race that follows and take the lead back. The quiet lasts five leases.
    ///
    /// A leader that placement leaves out of the group stays out of elections for good: in a
    /// joint configuration the replica it chose may not win the first round, and a leaving
    /// leader that took the lead back each time would hold the membership change off forever
    /// (it still votes; the group's next leader completes the change and it leaves).
    fn keep_out_of_elections(&self, shard: GroupId, groups: &crate::Groups) {
        let leaving = self
            .desired(shard)
            .is_some_and(|d| !d.contains(&self.inner.me));
        if leaving {
            // Until placement keeps it after all (the node's replica moves end the hold).
            groups.hold_elections(shard, ElectionHold::Leaving, true);
            return;
        }
        groups.hold_elections(shard, ElectionHold::SteppedAside, true);
        let quiet = std::time::Duration::from_millis(self.inner.config.lease_ms.saturating_mul(5));
        let groups = groups.clone();
        tokio::spawn(async move {
            tokio::time::sleep(quiet).await;
            groups.hold_elections(shard, ElectionHold::SteppedAside, false);
        });
    }

    /// Hands the lead of `shard` to replica `to` (an operator's leadership transfer): this
    /// node stops serving the shard, then asks `to` to call an election. No data moves.
    pub async fn transfer(&self, shard: GroupId, to: NodeId) -> Result<(), TransferRefused> {
        let (m, events) = self.transferable(shard, to)?;
        self.step_aside(shard, &m, to, events.as_ref()).await;
        Ok(())
    }

    /// Refuses at once a leadership transfer that cannot be made (`transfer`'s checks).
    pub fn check_transfer(&self, shard: GroupId, to: NodeId) -> Result<(), TransferRefused> {
        self.transferable(shard, to).map(|_| ())
    }

    /// The shard's group metrics and the leadership events, when this node may hand the
    /// shard's lead to `to`.
    fn transferable(
        &self,
        shard: GroupId,
        to: NodeId,
    ) -> Result<(GroupMetrics, Arc<dyn LeadershipEvents>), TransferRefused> {
        let raft = self.raft_of(shard);
        let me = self.inner.me;
        let not_leader = |leader| TransferRefused::NotLeader { me, shard, leader };
        if self.inner.balancing.get().is_none() {
            return Err(TransferRefused::Starting { shard });
        }
        let (Some(raft), Some(events)) = (raft, self.inner.events.get().cloned()) else {
            return Err(not_leader(None));
        };
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(me) {
            return Err(not_leader(m.current_leader));
        }
        if to == me {
            return Err(TransferRefused::AlreadyLeads { shard, to });
        }
        if !caught_up(&m, to) {
            return Err(TransferRefused::NotCaughtUp { shard, to });
        }
        if !self.connected(to) {
            return Err(TransferRefused::NotConnected { shard, to });
        }
        Ok((m, events))
    }

    /// Hands every shard this node leads to a caught-up follower (a node about to stop),
    /// then waits, at most `wait`, until none is led here. Returns how many are still led.
    pub async fn step_aside_all(&self, wait: Duration) -> usize {
        let Some(events) = self.inner.events.get().cloned() else {
            return 0;
        };
        let rafts: Vec<(GroupId, ShardRaft)> = match self.inner.rafts.read() {
            Ok(r) => r.iter().map(|(g, r)| (*g, r.clone())).collect(),
            Err(_) => return 0,
        };
        let me = self.inner.me;
        self.inner.leaving.store(true, Ordering::Release);
        for (shard, raft) in &rafts {
            let m = raft.metrics().borrow().clone();
            if m.current_leader != Some(me) {
                continue;
            }
            // The replica furthest along (it catches up while the shard quiesces).
            let voters = crate::membership::voters(&m);
            let target = m.replication.as_ref().and_then(|r| {
                r.iter()
                    .filter(|(peer, _)| {
                        **peer != me && voters.contains(peer) && self.connected(**peer)
                    })
                    .max_by_key(|(peer, matched)| {
                        (matched.map(|l| l.index), std::cmp::Reverse(**peer))
                    })
                    .map(|(peer, _)| *peer)
            });
            match target {
                Some(to) => self.step_aside(*shard, &m, to, events.as_ref()).await,
                None => self.stop_serving(*shard, events.as_ref()).await,
            }
        }
        let deadline = Instant::now() + wait;
        let mut still = 0;
        for (_, raft) in &rafts {
            let left = deadline.saturating_duration_since(Instant::now());
            let handed = raft
                .wait(Some(left))
                .metrics(|m| m.current_leader != Some(me), "led elsewhere")
                .await;
            still += usize::from(handed.is_err());
        }
        still
    }
}

/// Why a leadership transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefused {
    /// This node does not lead the shard (`leader`, if known, does: ask it).
    #[error("node {me} does not lead shard {shard}{}", leader.map(|l| format!("; node {l} does: ask it")).unwrap_or_default())]
    NotLeader {
        /// This node.
        me: NodeId,
        /// The shard.
        shard: GroupId,
        /// Its leader, as this node knows it.
        leader: Option<NodeId>,
    },
    /// The target leads the shard already.
    #[error("node {to} leads shard {shard} already")]
    AlreadyLeads {
        /// The shard.
        shard: GroupId,
        /// The target.
        to: NodeId,
    },
    /// This node's groups are still starting.
    #[error("shard {shard}'s groups are still starting here: try again shortly")]
    Starting {
        /// The shard.
        shard: GroupId,
    },
    /// The target is not a replica holding every entry of the shard's log.
    #[error("node {to} is not a caught-up replica of shard {shard}")]
    NotCaughtUp {
        /// The shard.
        shard: GroupId,
        /// The target.
        to: NodeId,
    },
    /// This node has no connection to the target (it is down or cut off).
    #[error("node {to} is not connected to this node: it cannot take shard {shard}'s lead now")]
    NotConnected {
        /// The shard.
        shard: GroupId,
        /// The target.
        to: NodeId,
    },
}

/// Whether the leader's metrics `m` say `peer` holds every entry of its log.
pub(super) fn caught_up(m: &GroupMetrics, peer: NodeId) -> bool {
    let matched = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&peer).copied().flatten());
    matched.is_some_and(|l| Some(l.index) == m.last_log_index)
}
