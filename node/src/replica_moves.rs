//! Following the agreed placement on every node of a replicated cluster: a replica placed
//! here starts as a blank member (its group's leader adds it as a learner and streams it the
//! shard); a group this node leads is moved to the placed voters; a replica placed elsewhere
//! leaves once a peer has applied a membership without it.

use crate::replicas::{current_placement, ReplicaStart};
use agora_replication::election_holds::ElectionHold;
use agora_replication::membership::{self, Step, CATCH_UP_TIMEOUT};
use agora_replication::LeadershipEvents;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How often this node compares its replicas with the placement.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// Most membership changes this node leads at once (each streams a shard to a new replica).
const CHANGES_AT_ONCE: usize = 4;

/// How far this node's replicas are from the placement: reported in the log and on the
/// admin endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ReplicaProgress {
    /// Shards placement gives this node.
    pub placed: usize,
    /// Of those, shards whose group counts this node as a voter.
    pub settled: usize,
    /// Replicas this node still runs although placement moved them elsewhere.
    pub leaving: usize,
}

/// The replica progress of a node, shared with the admin endpoint.
pub type SharedProgress = Arc<Mutex<ReplicaProgress>>;

/// Work in flight, so each shard has at most one change or departure running.
#[derive(Default)]
struct Busy {
    shards: Mutex<BTreeSet<u32>>,
}

impl Busy {
    fn claim(&self, shard: u32) -> bool {
        self.shards.lock().is_ok_and(|mut s| s.insert(shard))
    }

    fn release(&self, shard: u32) {
        if let Ok(mut s) = self.shards.lock() {
            s.remove(&shard);
        }
    }
}

/// Follows the agreed placement for as long as the node runs.
pub async fn follow_placement(
    r: Arc<ReplicaStart>,
    events: Arc<dyn LeadershipEvents>,
    progress: SharedProgress,
) {
    let busy = Arc::new(Busy::default());
    let permits = Arc::new(Semaphore::new(CHANGES_AT_ONCE));
    let mut last = ReplicaProgress::default();
    loop {
        let placement = current_placement(&r);
        r.serving.set_placement(&placement.replicas);
        let mut now = ReplicaProgress::default();
        for (shard, desired) in placement.replicas.iter().enumerate() {
            let shard = shard as u32;
            let desired: BTreeSet<u64> = desired.iter().copied().collect();
            follow_shard(&r, &events, &busy, &permits, shard, &desired, &mut now).await;
        }
        if now != last {
            tracing::info!(
                settled = now.settled,
                of = now.placed,
                leaving = now.leaving,
                "replicas placed on this node"
            );
            if let Ok(mut p) = progress.lock() {
                *p = now.clone();
            }
            last = now;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// Starts a replica that placement gives this node while the node runs, or `None` to try
/// again later. A replica with no log here, of a group that exists, is rebuilt: it grants
/// no votes until it holds what the first leader to reach it had committed. A blank member
/// granting votes elects a replica that lacks committed entries, and the replicas' logs
/// diverge. That happened when the group still counted this node as a voter (its disk was
/// replaced and it restarted before learning its placement, membership seed 37, session
/// 21), and also when no peer that answered did: a member cut off since before this node
/// left the group still counted it as a voter, and this node, placed in the group again
/// and blank, gave it the vote it needed (membership seed 275, session 29). Which peers
/// still count this node as a voter cannot be known, so no blank replica votes.
async fn start_placed(
    groups: &agora_replication::Groups,
    shard: u32,
    me: u64,
    peers: &BTreeSet<u64>,
) -> Result<Option<agora_replication::ShardRaft>, agora_replication::groups::GroupError> {
    if matches!(groups.last_log_index(shard).await, Ok(None)) {
        let mut answered = false;
        let mut voter = false;
        for peer in peers.iter().filter(|p| **p != me) {
            if let Some(members) = groups.peer_members(shard, *peer).await {
                answered = true;
                voter |= members.voters.contains(&me);
            }
        }
        if !answered {
            tracing::debug!(
                shard,
                "no peer says how the group stands: asking again later"
            );
            return Ok(None);
        }
        if voter {
            tracing::warn!(
                shard,
                "the group counts this node as a voter but its log is gone: rebuilding its replica"
            );
        } else {
            tracing::info!(
                shard,
                "a new replica of a group that exists: no votes until it has caught up"
            );
        }
        groups.mark_rebuilding(shard);
    }
    groups.start(shard).await.map(Some)
}

/// Brings one shard's replica here toward `desired`, counting it in `now`.
async fn follow_shard(
    r: &Arc<ReplicaStart>,
    events: &Arc<dyn LeadershipEvents>,
    busy: &Arc<Busy>,
    permits: &Arc<Semaphore>,
    shard: u32,
    desired: &BTreeSet<u64>,
    now: &mut ReplicaProgress,
) {
    let wanted = desired.contains(&r.me);
    let raft = r.groups.raft(shard);
    now.placed += usize::from(wanted);
    match (wanted, raft) {
        // A replica still being removed (its leave is under way) is not started again until
        // the removal is done: started meanwhile it read the old log, which the removal then
        // deleted under it (membership seed 58, session 21: a voter whose rows were gone).
        (true, None) if !busy.claim(shard) => {}
        (true, None) => {
            let started = start_placed(&r.groups, shard, r.me, desired).await;
            busy.release(shard);
            match started {
                Ok(None) => {}
                Ok(Some(raft)) => {
                    tracing::info!(
                        shard,
                        "placed here: waiting for the group to add this replica"
                    );
                    r.serving.watch(shard, raft, events.clone());
                }
                Err(e) => tracing::error!(shard, error = %e, "could not start a placed replica"),
            }
        }
        (true, Some(raft)) => {
            // Placed here (again): a replica once on its way out calls elections again.
            r.groups.hold_elections(shard, ElectionHold::Leaving, false);
            let m = raft.metrics().borrow().clone();
            now.settled += usize::from(membership::voters(&m).contains(&r.me));
            // No leader heard of: the group may have gone on without this replica while this
            // node's placement is stale (it was removed and left the map's group before it
            // learned the placement, or was cut off meanwhile). Its peers say.
            // (A blank replica waiting to be added has no membership yet: nothing to check.)
            let has_membership = m.membership_config.log_id().is_some();
            if m.current_leader.is_none() && has_membership && busy.claim(shard) {
                let peers: BTreeSet<u64> =
                    membership::members(&m).union(desired).copied().collect();
                tokio::spawn(leave(r.clone(), busy.clone(), shard, peers));
                return;
            }
            let leads = m.current_leader == Some(r.me);
            let pending = matches!(
                membership::next_step(r.me, &m, desired),
                Step::Change { .. }
            );
            if leads && pending && busy.claim(shard) {
                tokio::spawn(change(
                    r.clone(),
                    busy.clone(),
                    permits.clone(),
                    shard,
                    desired.clone(),
                ));
            }
        }
        (false, Some(_)) => {
            now.leaving += 1;
            // A replica on its way out calls no elections (it still votes): the replicas that
            // stay lead, and one of them takes it out of the group.
            r.groups.hold_elections(shard, ElectionHold::Leaving, true);
            if busy.claim(shard) {
                tokio::spawn(leave(r.clone(), busy.clone(), shard, desired.clone()));
            }
        }
        (false, None) => {}
    }
}

/// Moves `shard`'s group (led here) to the voters `desired`.
async fn change(
    r: Arc<ReplicaStart>,
    busy: Arc<Busy>,
    permits: Arc<Semaphore>,
    shard: u32,
    desired: BTreeSet<u64>,
) {
    if let (Ok(_permit), Some(raft)) = (permits.acquire().await, r.groups.raft(shard)) {
        // A learner is waited for only while placement still puts it here.
        let wanted = |node: u64| {
            crate::replicas::current_placement(&r)
                .replicas
                .get(shard as usize)
                .is_some_and(|d| d.contains(&node))
        };
        let catch_up = (CATCH_UP_TIMEOUT, &wanted as &(dyn Fn(u64) -> bool + Sync));
        match membership::change_voters(r.me, shard, &raft, &desired, catch_up).await {
            Ok(changed) => tracing::debug!(shard, changed, "group membership follows placement"),
            Err(e) => tracing::warn!(shard, error = %e, "group membership change did not finish"),
        }
    }
    busy.release(shard);
}

/// Drops this node's replica of `shard` once one of `peers` has applied a membership at
/// least as new as this replica's latest, without this node (so the group no longer counts
/// on it).
async fn leave(r: Arc<ReplicaStart>, busy: Arc<Busy>, shard: u32, peers: BTreeSet<u64>) {
    let mine = r
        .groups
        .raft(shard)
        .and_then(|raft| *raft.metrics().borrow().membership_config.log_id());
    let mut left = false;
    for peer in peers.iter().filter(|p| **p != r.me) {
        if let Some(view) = r.groups.peer_members(shard, *peer).await {
            left |= membership::left_group(r.me, mine, &view);
        }
    }
    if left {
        match r.groups.remove(shard).await {
            Ok(()) => r.serving.forget(shard).await,
            Err(e) => {
                tracing::error!(shard, error = %e, "could not remove a replica placed elsewhere")
            }
        }
    }
    busy.release(shard);
}
