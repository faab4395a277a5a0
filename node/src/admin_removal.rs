//! Following a node's removal for good as an operation: it counts the removed node's
//! replicas rebuilt elsewhere, read from what `GET /admin/cluster/replicas` shows on this
//! node and on each peer that answers (each group's voters), until every one is.

use crate::admin::{map_snapshot, AdminState, ReplicaView};
use crate::admin_dto::{OperationKind, OperationResult, ProgressUnit, RemovingDto};
use crate::admin_operations::{launch, OperationHandle, Target};
use agora_http_edge::problem::Problem;
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How often the replicas are looked at.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How long a removal is followed before its operation fails (the removal itself goes on).
const FOLLOW_FOR: Duration = Duration::from_secs(30 * 60);

/// One group as a node's `GET /admin/cluster/replicas` shows it: only what is compared.
#[derive(Debug, serde::Deserialize)]
struct SeenGroup {
    shard: u32,
    voters: BTreeSet<u64>,
}

/// A node's `GET /admin/cluster/replicas`: only what is compared.
#[derive(Debug, serde::Deserialize)]
struct SeenReplicas {
    me: u64,
    groups: Vec<SeenGroup>,
}

/// The shards whose placement (the agreed one, else the cluster file's) has a replica on
/// `node`: what its removal rebuilds elsewhere.
pub fn shards_placed_on(
    s: &AdminState,
    view: &ReplicaView,
    node: u64,
) -> Result<BTreeSet<u32>, Problem> {
    let agreed = map_snapshot(s)?.replicas;
    let placement = match agreed.version {
        0 => &view.file_placement,
        _ => &agreed.replicas,
    };
    Ok(placed_on(placement, node))
}

fn placed_on(placement: &[Vec<u64>], node: u64) -> BTreeSet<u32> {
    (0u32..)
        .zip(placement)
        .filter(|(_, replicas)| replicas.contains(&node))
        .map(|(shard, _)| shard)
        .collect()
}

/// Starts the operation following `node`'s agreed removal: 202 with it.
pub fn follow(s: Arc<AdminState>, node: u64, shards: BTreeSet<u32>) -> Result<Response, Problem> {
    let what = (
        OperationKind::Remove,
        Target {
            node: Some(node),
            shard: None,
            to: None,
        },
    );
    let total = (shards.len(), ProgressUnit::Replicas);
    let ops = s.operations.clone();
    launch(&ops, what, total, move |op| watch(s, node, shards, op))
}

/// Looks at the replicas until every one of `node`'s is rebuilt elsewhere (or `FOLLOW_FOR`
/// has passed).
async fn watch(
    s: Arc<AdminState>,
    node: u64,
    shards: BTreeSet<u32>,
    op: OperationHandle,
) -> Result<OperationResult, Problem> {
    let total = shards.len();
    let deadline = tokio::time::Instant::now() + FOLLOW_FOR;
    let mut last = 0;
    loop {
        let placement = map_snapshot(&s)?.replicas.replicas;
        let done = rebuilt(&seen_groups(&s, node).await, &placement, node, &shards);
        if done != last {
            tracing::info!(
                node,
                rebuilt = done,
                of = total,
                "removal: replicas rebuilt elsewhere"
            );
            op.progress(done, total);
            last = done;
        }
        if done >= total {
            return Ok(OperationResult::Removed(RemovingDto {
                node,
                status: "removed".to_string(),
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::unavailable(format!(
                "{done} of {total} replicas of node {node} were rebuilt elsewhere within {} \
                 minutes; the removal goes on: GET /admin/cluster/replicas follows it",
                FOLLOW_FOR.as_secs() / 60
            )));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Each group's voters as some node other than `node` sees them: this one, then each
/// peer that answers (every view of a group is kept).
async fn seen_groups(s: &Arc<AdminState>, node: u64) -> BTreeMap<u32, Vec<BTreeSet<u64>>> {
    let mut groups: BTreeMap<u32, Vec<BTreeSet<u64>>> = BTreeMap::new();
    let mine = crate::admin_replicas::replicas(axum::extract::State(s.clone())).await;
    if let (Ok(axum::Json(mine)), false) = (mine, s.membership.me == node) {
        for g in mine.groups {
            groups.entry(g.shard).or_default().push(g.voters);
        }
    }
    let peers: Vec<SeenReplicas> =
        crate::admin_members::ask_peers(s, "/admin/cluster/replicas").await;
    for view in peers.into_iter().filter(|v| v.me != node) {
        for g in view.groups {
            groups.entry(g.shard).or_default().push(g.voters);
        }
    }
    groups
}

/// How many of `shards` some node's member sees rebuilt without `node`: voters without it
/// that include every replica the placement now gives the shard.
fn rebuilt(
    seen: &BTreeMap<u32, Vec<BTreeSet<u64>>>,
    placement: &[Vec<u64>],
    node: u64,
    shards: &BTreeSet<u32>,
) -> usize {
    let settled = |shard: &u32| {
        let Some(placed) = placement.get(*shard as usize) else {
            return false;
        };
        seen.get(shard)
            .into_iter()
            .flatten()
            .any(|voters| !voters.contains(&node) && placed.iter().all(|r| voters.contains(r)))
    };
    shards.iter().filter(|s| settled(s)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_counts_once_a_member_sees_its_placed_voters_without_the_removed_node() {
        // Node 1 is removed: shards 0 and 1 held a replica of it, shard 2 did not.
        let before = vec![vec![1, 2, 3], vec![1, 2, 4], vec![2, 3, 4]];
        let shards = placed_on(&before, 1);
        assert_eq!(shards, [0, 1].into_iter().collect());
        let after = vec![vec![2, 3, 4], vec![2, 3, 4], vec![2, 3, 4]];
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let mut seen = BTreeMap::new();
        // Shard 0's group still counts node 1; shard 1's has not added node 3 yet.
        seen.insert(0, vec![set(&[1, 2, 3, 4])]);
        seen.insert(1, vec![set(&[2, 4])]);
        assert_eq!(rebuilt(&seen, &after, 1, &shards), 0);
        // One member of shard 0 sees the new voters: it counts.
        seen.insert(0, vec![set(&[1, 2, 3, 4]), set(&[2, 3, 4])]);
        assert_eq!(rebuilt(&seen, &after, 1, &shards), 1);
        seen.insert(1, vec![set(&[2, 3, 4])]);
        assert_eq!(rebuilt(&seen, &after, 1, &shards), 2);
    }
}
