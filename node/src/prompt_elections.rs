//! Prompt elections after a shard leader's process dies. openraft's followers refuse to vote
//! for anyone until `election_timeout_max` after they last heard from their leader (its
//! lease), while a follower's own election timer fires somewhere in `[min, max)`: so the
//! first election after a leader's death is always refused, and the shard waits for a second
//! timer, 0.5 to 1 s after the death with the default timeouts. When this node's session to
//! a group's leader is gone (the failure detector says down: a killed process's connection
//! resets at once), it asks openraft for an election as soon as the leader's lease has run
//! out, one surviving replica after another (by id, a heartbeat apart) so that they do not
//! split the vote, and only if nothing holds the replica out of elections. openraft runs
//! the election and its rules; this only chooses the moment.

use agora_cluster::liveness::{Liveness, PeerStatus};
use agora_replication::{GroupConfig, Groups};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// When to ask: the leader's lease, then this replica's turn among the survivors.
#[derive(Debug, Clone, Copy)]
struct Timing {
    lease: Duration,
    turn: Duration,
}

/// Starts asking for prompt elections in the groups of `groups` that this node (`me`)
/// follows, as `config` times them.
pub fn start(me: u64, groups: Groups, liveness: Liveness, shard_count: u32, config: &GroupConfig) {
    let timing = Timing {
        lease: Duration::from_millis(config.election_timeout_ms.1),
        turn: Duration::from_millis(config.heartbeat_ms),
    };
    tokio::spawn(async move {
        // Per shard: since when its leader has been down, as seen here.
        let mut leader_down_since: BTreeMap<u32, Instant> = BTreeMap::new();
        loop {
            tokio::time::sleep(timing.turn).await;
            for shard in 0..shard_count {
                look_at(
                    me,
                    shard,
                    (&groups, &liveness),
                    &mut leader_down_since,
                    timing,
                );
            }
        }
    });
}

/// Asks for an election in `shard`'s group if its leader has been down here long enough.
fn look_at(
    me: u64,
    shard: u32,
    (groups, liveness): (&Groups, &Liveness),
    leader_down_since: &mut BTreeMap<u32, Instant>,
    timing: Timing,
) {
    let Some(raft) = groups.raft(shard) else {
        leader_down_since.remove(&shard);
        return;
    };
    let metrics = raft.metrics().borrow().clone();
    let dead_leader = metrics
        .current_leader
        .filter(|l| *l != me && liveness.status(*l) == PeerStatus::Down);
    // A replica held out of elections (rebuilding, starting, leaving, stepped aside) is
    // never asked: the holds are what keep a lagging replica from being elected.
    let Some(leader) = dead_leader.filter(|_| groups.calls_elections(shard)) else {
        leader_down_since.remove(&shard);
        return;
    };
    let since = *leader_down_since.entry(shard).or_insert_with(Instant::now);
    let survivors: Vec<u64> = metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != leader)
        .collect();
    let Some(rank) = survivors.iter().position(|v| *v == me) else {
        return;
    };
    let due = timing.lease + timing.turn * u32::try_from(rank).unwrap_or(u32::MAX);
    if since.elapsed() < due {
        return;
    }
    // Asked once per lease: if the vote fails, the next ask waits another lease.
    leader_down_since.insert(shard, Instant::now());
    tracing::info!(
        shard,
        leader,
        down_ms = since.elapsed().as_millis() as u64,
        "the shard's leader is down here: asking for an election"
    );
    metrics::counter!("agora_prompt_elections_total").increment(1);
    tokio::spawn(async move {
        if let Err(e) = raft.trigger().elect().await {
            tracing::warn!(shard, error = %e, "could not ask for an election");
        }
    });
}
