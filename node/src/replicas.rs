//! Replicated shards on a cluster node (`replication_factor` above one): each shard this
//! node holds a replica of runs as a member of the shard's group; the node serves the shards
//! whose groups it leads (within the lease), claims them in the shard map so requests are
//! routed here, and stops their entities when it stops leading.

use agora_actors::client::AskError;
use agora_cluster::handoff::Handoff;
use agora_cluster::shard_map::SharedShardMap;
use agora_replication::placement::{place, Placement};
use agora_replication::serving::Balancing;
use agora_replication::{Groups, LeadershipEvents, Serving};
use agora_runtime::region::Region;
use agora_runtime::ServeGuard;
use agora_store::Writer;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The region's guard: a replicated shard is served only by its group's leased leader.
pub struct LeaderGuard(pub Serving);

impl ServeGuard for LeaderGuard {
    fn may_serve(&self, shard: u32) -> bool {
        self.0.may_serve(shard)
    }

    fn handed_to(&self, shard: u32) -> Option<u64> {
        self.0.handed_to(shard)
    }
}

/// What this node does when it starts or stops leading a shard's group.
struct NodeLeadership {
    writer: Writer,
    region: Region,
    handoff: Handoff,
    serving: Serving,
}

/// Longest pause between two attempts to claim a shard in the map.
const CLAIM_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a serving leader checks that the map still routes its shard to it.
const CLAIM_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// While this node serves `shard`, keeps the map naming it as the owner: proposes a move
/// whenever the map says otherwise (the map's own leader may be the node that just died,
/// or a claim of a briefer leader may land after this one).
async fn keep_claimed(handoff: Handoff, serving: Serving, shard: u32, term: u64) {
    let mut pause = std::time::Duration::from_millis(50);
    let mut failures = 0u32;
    while serving.served().contains(&shard) {
        if handoff.owns(shard) {
            tokio::time::sleep(CLAIM_CHECK_EVERY).await;
            continue;
        }
        match handoff.claim(shard).await {
            Ok(()) => {
                pause = std::time::Duration::from_millis(50);
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                if failures.is_multiple_of(10) {
                    tracing::warn!(shard, term, failures, error = %e, "still cannot claim the shard in the map");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(CLAIM_PAUSE_MAX);
            }
        }
    }
}

#[async_trait]
impl LeadershipEvents for NodeLeadership {
    async fn lead(&self, shard: u32, term: u64) {
        // Messages and timers the group stored while another node led it.
        match self.writer.adopt_outbox(shard).await {
            Ok(rows) => tracing::debug!(shard, term, rows, "adopted the shard's outbox"),
            Err(e) => tracing::error!(shard, error = %e, "could not adopt the shard's outbox"),
        }
        if let Err(e) = self.region.host(shard, term).await {
            tracing::error!(shard, error = %e, "could not host a shard this node leads");
        }
        tokio::spawn(keep_claimed(
            self.handoff.clone(),
            self.serving.clone(),
            shard,
            term,
        ));
    }

    async fn quiesce(&self, shard: u32) {
        if let Err(e) = self.region.freeze(shard).await {
            tracing::debug!(shard, error = %e, "nothing to quiesce");
        }
    }

    async fn step_down(&self, shard: u32) {
        // Messages waiting in the shard were never delivered: refused so, their senders ask
        // the new leader.
        let waiting = self.region.release(shard).await;
        tracing::debug!(shard, refused = waiting.len(), "stopped serving the shard");
        for (_, msg) in waiting {
            let why = format!("shard {shard}: this node stopped serving it");
            msg.refuse(AskError::not_served_here(why, None));
        }
    }
}

/// Which nodes hold each shard's replicas for a cluster of `nodes` with `factor`.
pub fn placement(shard_count: u32, nodes: &[u64], factor: usize) -> Placement {
    place(shard_count, nodes, factor, &Placement::default())
}

/// How this node's replica of a group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// From its own disk (a restart), or as part of a new cluster.
    AsIs,
    /// Its disk is new but the group already has a log elsewhere: the disk was replaced,
    /// so the replica is rebuilt from its peers before it may vote.
    Rebuild,
}

/// What starting the replicas needs.
pub struct ReplicaStart {
    /// This node.
    pub me: u64,
    /// Where every shard's replicas are as the cluster file places them (used until the map
    /// agrees a placement).
    pub file_placement: Placement,
    /// Whether this node joins a running cluster (`--join`): it holds nothing until placed.
    pub joining: bool,
    /// The agreed map and placement.
    pub map: SharedShardMap,
    /// Whether this node's store was created at this start.
    pub new_store: bool,
    /// The node's groups.
    pub groups: Groups,
    /// What this node serves.
    pub serving: Serving,
    /// Set once the replicas placed here at start are running (readiness waits for it).
    pub started: Arc<AtomicBool>,
}

/// The shards `me` holds a replica of.
pub fn replicas_of(placement: &Placement, me: u64) -> Vec<u32> {
    let held = placement.replicas.iter().enumerate();
    held.filter(|(_, r)| r.contains(&me))
        .map(|(s, _)| s as u32)
        .collect()
}

/// The placement replicas follow now: the agreed one, else the cluster file's (nothing for
/// a node that joined and was not placed yet).
pub fn current_placement(r: &ReplicaStart) -> Placement {
    let agreed = r.map.read().ok().map(|m| m.replicas.clone());
    match agreed {
        Some(a) if a.version > 0 => Placement {
            replicas: a.replicas,
        },
        _ if r.joining => Placement::default(),
        _ => r.file_placement.clone(),
    }
}

/// Starts this node's member of every group it holds a replica of, in the background (a
/// node with a new disk first asks its peers whether the groups already exist), serves
/// those it leads, and then follows the agreed placement.
pub fn start(
    replicas: ReplicaStart,
    events: (Writer, Region, Handoff),
    progress: crate::replica_moves::SharedProgress,
) {
    let (writer, region, handoff) = events;
    let events: Arc<dyn LeadershipEvents> = Arc::new(NodeLeadership {
        writer,
        region,
        handoff,
        serving: replicas.serving.clone(),
    });
    tokio::spawn(async move {
        let placement = current_placement(&replicas);
        replicas.serving.set_placement(&placement.replicas);
        let mine = replicas_of(&placement, replicas.me);
        let total = mine.len();
        start_leftovers(&replicas, &placement, &mine, &events).await;
        for (k, shard) in mine.into_iter().enumerate() {
            let initial = placement.replicas.get(shard as usize).cloned();
            let initial = initial.unwrap_or_default();
            if let Err(e) = start_one(&replicas, shard, &initial, events.clone()).await {
                tracing::error!(shard, error = %e, "could not start the shard's replica");
            }
            tracing::debug!(shard, started = k + 1, of = total, "shard replica started");
        }
        replicas.serving.balance(Balancing {
            groups: replicas.groups.clone(),
        });
        replicas.started.store(true, Ordering::Release);
        let rebuilding = replicas.groups.rebuilding().len();
        tracing::info!(
            node = replicas.me,
            replicas = total,
            of = placement.replicas.len(),
            rebuilding,
            "shard replicas started"
        );
        crate::replica_moves::follow_placement(Arc::new(replicas), events, progress).await;
    });
}

/// Starts the replicas on this disk that the placement no longer gives this node (it was
/// down or cut off while they moved, or it was removed for good): following the placement
/// then drops each once a peer has applied a membership without this node, or hands on its
/// lead first. Left stopped, their rows would stay on the disk for good and the group would
/// miss a voter it may still count on.
async fn start_leftovers(
    r: &ReplicaStart,
    placement: &Placement,
    mine: &[u32],
    events: &Arc<dyn LeadershipEvents>,
) {
    let shard_count = u32::try_from(placement.replicas.len()).unwrap_or(u32::MAX);
    for shard in (0..shard_count).filter(|s| !mine.contains(s)) {
        match r.groups.last_log_index(shard).await {
            Ok(None) => {}
            Ok(Some(last)) => match r.groups.start(shard).await {
                Ok(raft) => {
                    tracing::info!(
                        shard,
                        last,
                        "a replica placed elsewhere is still on this disk: started to leave its group"
                    );
                    r.serving.watch(shard, raft, events.clone());
                }
                Err(e) => tracing::error!(shard, error = %e, "could not start a leftover replica"),
            },
            Err(e) => tracing::error!(shard, error = %e, "could not read a group's log state"),
        }
    }
}

async fn start_one(
    r: &ReplicaStart,
    shard: u32,
    replicas: &[u64],
    events: Arc<dyn LeadershipEvents>,
) -> anyhow::Result<()> {
    let start = if r.new_store {
        decide(&r.groups, shard, r.me, replicas).await
    } else {
        Start::AsIs
    };
    if start == Start::Rebuild {
        tracing::warn!(
            shard,
            "this node's disk is new but the group exists: rebuilding its replica"
        );
        r.groups.mark_rebuilding(shard);
    }
    let raft = r.groups.start(shard).await?;
    // Placement's first replica is the group's preferred leader: it starts the group (a
    // group that already has a log keeps it).
    if start == Start::AsIs && replicas.first() == Some(&r.me) {
        r.groups.initialize_members(shard, replicas).await?;
    }
    r.serving.watch(shard, raft, events);
    Ok(())
}

/// Whether a new disk's replica of `shard` joins a new group or rebuilds an existing one:
/// any peer with a leader's entry in its log means the group exists; a majority of replicas
/// without one (this node included) means it is new. Until either is known, it asks again.
async fn decide(groups: &Groups, shard: u32, me: u64, replicas: &[u64]) -> Start {
    use agora_replication::group_exists::{find_out, Found};
    let name = format!("shard {shard}");
    match find_out(&name, me, replicas, |peer| {
        groups.peer_log_index(shard, peer)
    })
    .await
    {
        Found::ExistingGroup => Start::Rebuild,
        Found::NewGroup => Start::AsIs,
    }
}

/// Whether every replicated shard is served: for the readiness check, so that a node says
/// it is ready only once requests for any shard reach a serving leader.
pub struct ShardsReady {
    /// This node's groups (`None`: shards are not replicated, nothing to wait for).
    pub groups: Option<Groups>,
    /// Set once the replicas placed here at start are running.
    pub started: Arc<AtomicBool>,
}

impl ShardsReady {
    /// Whether the replicas placed here at start run, every group this node is a member of
    /// has a leader that is this node or one `reachable` that it heard from since it started
    /// (requests are routed to it), and no replica here is still being rebuilt (until then
    /// this node cannot stand in for a lost peer: taking another node down would stop those
    /// shards).
    pub fn all_led(&self, reachable: impl Fn(u64) -> bool) -> bool {
        let Some(groups) = &self.groups else {
            return true;
        };
        if !self.started.load(Ordering::Acquire) || !groups.rebuilding().is_empty() {
            return false;
        }
        let me = groups.me();
        groups.ids().into_iter().all(|shard| {
            let leader = groups.leader(shard);
            leader == Some(me)
                || leader.is_some_and(|l| reachable(l) && groups.heard_a_leader(shard))
        })
    }
}
