//! The admin endpoint's view of replicated shards: where placement puts each shard's
//! replicas, what this node's member of each group it runs sees, how far this node's
//! replicas are from the placement, and removing a node for good.

use crate::admin::{map_snapshot, require_mutations, AdminState};
use crate::admin_dto::{GroupDto, OperationDto, ReceivedDto, ReplicasDto};
use agora_cluster::handoff::MoveError;
use agora_cluster::raft::types::TOO_FEW_MEMBERS;
use agora_http_edge::problem::Problem;
use agora_replication::membership;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

pub(crate) fn not_replicated() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not-replicated",
        "Shards are not replicated",
        "this cluster's replication_factor is 1: each shard lives on one node".to_string(),
    )
}

/// `GET /admin/cluster/replicas`: the agreed placement (`null` while the cluster file's
/// holds), this node's progress toward it, each group this node runs as its member sees it,
/// and the shard map group's voters as this node knows them.
#[utoipa::path(get, path = "/admin/cluster/replicas", operation_id = "get_replicas", tag = "replicas", security(("bearer" = [])),
    responses((status = 200, body = ReplicasDto, description = "placement, progress and this node's groups"),
              (status = 409, description = "shards are not replicated (replication_factor 1)"),
              (status = 500, description = "the shard map could not be read")))]
pub async fn replicas(State(s): State<Arc<AdminState>>) -> Result<Json<ReplicasDto>, Problem> {
    let Some(view) = &s.replicas else {
        return Err(not_replicated());
    };
    let map = map_snapshot(&s)?;
    let progress = view.progress.lock().map(|p| p.clone()).unwrap_or_default();
    let groups: Vec<GroupDto> = view
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
            Some(GroupDto {
                shard,
                leader: m.current_leader,
                term: m.current_term,
                voters,
                learners,
                applied: m.last_applied.map(|l| l.index),
            })
        })
        .collect();
    let version = map.replicas.version;
    Ok(Json(ReplicasDto {
        me: s.membership.me,
        version,
        placement: (version > 0).then_some(map.replicas.replicas),
        removed: map.replicas.removed,
        map_voters: s.raft.as_ref().map(agora_cluster::raft::voters),
        progress,
        rebuilding: view.groups.rebuilding(),
        received: view
            .groups
            .received()
            .into_iter()
            .map(|(shard, received)| ReceivedDto { shard, received })
            .collect(),
        groups,
    }))
}

/// How this node's shard groups stand, for the metrics an operator alerts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupHealth {
    /// Groups this node is a member of whose member knows no leader.
    pub without_leader: usize,
    /// Groups this node leads with fewer voters than `replication_factor`.
    pub under_replicated: usize,
    /// Groups this node leads.
    pub led: usize,
}

/// Reads each group's member's metrics on this node.
pub fn group_health(view: &crate::admin::ReplicaView) -> GroupHealth {
    let me = view.groups.me();
    let mut health = GroupHealth::default();
    for shard in view.groups.ids() {
        let Some(raft) = view.groups.raft(shard) else {
            continue;
        };
        let m = raft.metrics().borrow().clone();
        match m.current_leader {
            None => health.without_leader += 1,
            Some(leader) if leader == me => {
                health.led += 1;
                if membership::voters(&m).len() < view.replication_factor {
                    health.under_replicated += 1;
                }
            }
            Some(_) => {}
        }
    }
    health
}

/// Query of a removal.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove even if fewer nodes than the replication factor would remain (each shard then
    /// keeps fewer replicas, and loses fault tolerance, until a node joins).
    #[serde(default)]
    pub force: bool,
}

/// Refuses a removal that would leave fewer members than each shard has replicas, unless
/// `force`d: the shards would keep fewer replicas, and a two-replica group stops at the
/// next failure.
fn check_enough_remain(
    members: &[u64],
    removed: &std::collections::BTreeSet<u64>,
    (id, factor, force): (u64, usize, bool),
) -> Result<(), Problem> {
    let remaining = members
        .iter()
        .filter(|m| **m != id && !removed.contains(m))
        .count();
    if remaining >= factor || force {
        return Ok(());
    }
    Err(too_few_members(format!(
        "removing node {id} leaves {remaining} members for {factor} replicas of each shard"
    )))
}

/// `POST /admin/cluster/members/{id}/remove`: removes node `id` for good. Placement leaves
/// it out, each of its replicas is rebuilt on another node, and it leaves every group and
/// the shard map's group. Answers 202 once the removal is agreed, with the operation
/// (`Location: /admin/operations/{id}`) that counts its replicas rebuilt elsewhere.
/// Refused (409) when fewer nodes than the replication factor would remain, unless forced.
#[utoipa::path(post, path = "/admin/cluster/members/{id}/remove", operation_id = "remove_member", tag = "replicas", security(("bearer" = [])),
    params(("id" = u64, Path, description = "the node to remove"), RemoveQuery),
    responses((status = 202, body = OperationDto, description = "the removal was agreed; the operation counts the node's replicas rebuilt elsewhere (GET /admin/cluster/replicas shows each group)",
                 headers(("Location" = String, description = "the operation: `/admin/operations/{id}`"))),
              (status = 400, description = "malformed node id or query"),
              (status = 403, description = "mutating routes are disabled (admin_mutations), or no admin token is configured"),
              (status = 404, description = "no such member"),
              (status = 409, description = "shards are not replicated, the node is the last member, or too few members would remain (unless forced)"),
              (status = 429, description = "too many operations are running on this node"),
              (status = 500, description = "the shard map could not be read"),
              (status = 503, description = "the removal could not be agreed; retry")))]
pub async fn remove_member(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<u64>,
    Query(query): Query<RemoveQuery>,
) -> Result<axum::response::Response, Problem> {
    require_mutations(&s)?;
    let Some(view) = &s.replicas else {
        return Err(not_replicated());
    };
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
    let removed = map_snapshot(&s)?.replicas.removed;
    let factor = view.replication_factor;
    check_enough_remain(&members, &removed, (id, factor, query.force))?;
    // This node's map may lag the agreed one (a removal just accepted elsewhere): the map's
    // group checks again where the removal is agreed.
    let min_remaining = if query.force { 0 } else { factor };
    let placed_on_it = crate::admin_removal::shards_placed_on(&s, view, id)?;
    match s.handoff.remove_node(id, min_remaining).await {
        Ok(()) => {
            tracing::warn!(node = id, "node removed for good by an operator");
            crate::admin_removal::follow(s.clone(), id, placed_on_it)
        }
        Err(MoveError::Refused(why)) if why.starts_with(TOO_FEW_MEMBERS) => {
            let detail = why
                .trim_start_matches(TOO_FEW_MEMBERS)
                .trim_start_matches(": ");
            Err(too_few_members(detail.to_string()))
        }
        Err(e) => Err(Problem::unavailable(e.to_string())),
    }
}

/// The 409 for a removal that would leave fewer members than replicas per shard.
fn too_few_members(detail: String) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "too-few-members",
        "Too few members would remain",
        format!(
            "{detail}: join a node first (agora node --join), then remove this one; or add \
             ?force=true to run with fewer replicas until one joins"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_must_leave_a_member_for_every_replica_unless_forced() {
        let none = std::collections::BTreeSet::new();
        assert!(check_enough_remain(&[1, 2, 3, 4], &none, (4, 3, false)).is_ok());
        let refused = check_enough_remain(&[1, 2, 3], &none, (3, 3, false));
        assert!(refused.is_err_and(|p| p.status == StatusCode::CONFLICT));
        assert!(check_enough_remain(&[1, 2, 3], &none, (3, 3, true)).is_ok());
        // A node already being removed does not count as remaining.
        let removing: std::collections::BTreeSet<u64> = [4].into_iter().collect();
        assert!(check_enough_remain(&[1, 2, 3, 4], &removing, (3, 3, false)).is_err());
    }
}
