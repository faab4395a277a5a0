//! The admin endpoint's view of replicated shards: where placement puts each shard's
//! replicas, what this node's member of each group it runs sees, how far this node's
//! replicas are from the placement, and removing a node for good.

use crate::admin::{map_snapshot, require_mutations, AdminState};
use agora_http_edge::problem::Problem;
use agora_replication::membership;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

fn not_replicated() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not-replicated",
        "Shards are not replicated",
        "this cluster's replication_factor is 1: each shard lives on one node".to_string(),
    )
}

/// `GET /admin/cluster/replicas`: the agreed placement (`null` while the cluster file's
/// holds), this node's progress toward it, and each group this node runs as its member
/// sees it.
pub async fn replicas(State(s): State<Arc<AdminState>>) -> Result<Json<Value>, Problem> {
    let Some(view) = &s.replicas else {
        return Err(not_replicated());
    };
    let map = map_snapshot(&s)?;
    let progress = view.progress.lock().map(|p| p.clone()).unwrap_or_default();
    let groups: Vec<Value> = view
        .groups
        .ids()
        .into_iter()
        .filter_map(|shard| {
            let m = view.groups.raft(shard)?.metrics().borrow().clone();
            let voters = membership::voters(&m);
            let learners: Vec<u64> = membership::members(&m)
                .difference(&voters)
                .copied()
                .collect();
            Some(json!({
                "shard": shard,
                "leader": m.current_leader,
                "term": m.current_term,
                "voters": voters,
                "learners": learners,
                "applied": m.last_applied.map(|l| l.index),
            }))
        })
        .collect();
    let placement = (map.replicas.version > 0).then_some(&map.replicas.replicas);
    Ok(Json(json!({
        "me": s.membership.me,
        "version": map.replicas.version,
        "placement": placement,
        "removed": map.replicas.removed,
        "progress": progress,
        "rebuilding": view.groups.rebuilding(),
        "received": view
            .groups
            .received()
            .into_iter()
            .map(|(shard, r)| json!({ "shard": shard, "received": r }))
            .collect::<Vec<_>>(),
        "groups": groups,
    })))
}

/// `POST /admin/cluster/members/{id}/remove`: removes node `id` for good. Placement leaves
/// it out, each of its replicas is rebuilt on another node, and it leaves every group and
/// the shard map's group. Answers 202 at once: `GET /admin/cluster/replicas` follows it.
pub async fn remove_member(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    require_mutations(&s)?;
    if s.replicas.is_none() {
        return Err(not_replicated());
    }
    let members: Vec<u64> = match &s.raft {
        Some(raft) => agora_cluster::raft::voters(raft).into_iter().collect(),
        None => Vec::new(),
    };
    if !members.contains(&id) {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-member",
            "No such member",
            format!("node {id} is not a member of the cluster (members: {members:?})"),
        ));
    }
    if members.len() < 2 {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "last-member",
            "Last member",
            format!("node {id} is the cluster's only member"),
        ));
    }
    match s.handoff.remove_node(id).await {
        Ok(()) => {
            tracing::warn!(node = id, "node removed for good by an operator");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "node": id, "status": "removing" })),
            ))
        }
        Err(e) => Err(Problem::unavailable(e.to_string())),
    }
}
