//! `GET /admin/cluster/members`: who is in the cluster, each member's status as this node
//! sees it, and its reachability as every node sees it: this node asks each peer's admin
//! endpoint for its own view (`?local=true`), all at once, a second at most.

use crate::admin::{map_snapshot, AdminState};
use crate::admin_dto::{MemberDto, MembersDto};
use agora_http_edge::problem::Problem;
use axum::extract::{Query, State};
use axum::Json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a peer's view is waited for.
const PEER_VIEW_TIMEOUT: Duration = Duration::from_secs(1);

/// Query of the member list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// Only this node's view: no `seen_by`, no peer asked.
    #[serde(default)]
    pub local: bool,
}

/// `GET /admin/cluster/members`: who is in the cluster, each member's status as this node
/// sees it, and (unless `local`) its reachability as each node that answered sees it.
#[utoipa::path(get, path = "/admin/cluster/members", operation_id = "list_members", tag = "cluster", security(("bearer" = [])),
    params(MembersQuery),
    responses((status = 200, body = MembersDto, description = "the members, by id"),
              (status = 400, description = "malformed query"),
              (status = 500, description = "the shard map could not be read")))]
pub async fn members(
    State(s): State<Arc<AdminState>>,
    Query(query): Query<MembersQuery>,
) -> Result<Json<MembersDto>, Problem> {
    let mut view = local_view(&s).await?;
    if query.local {
        return Ok(Json(view));
    }
    let views = peer_views(&s).await;
    let me = view.me;
    for member in &mut view.members {
        let mut seen: BTreeMap<u64, String> = views
            .iter()
            .filter_map(|v| {
                let theirs = v.members.iter().find(|m| m.id == member.id)?;
                Some((v.me, theirs.status.clone()))
            })
            .collect();
        seen.insert(me, member.status.clone());
        member.seen_by = Some(seen);
    }
    Ok(Json(view))
}

/// The members as this node sees them.
async fn local_view(s: &AdminState) -> Result<MembersDto, Problem> {
    let map = map_snapshot(s)?;
    let local_entities: usize = s.region.stats().await.iter().map(|(_, x)| x.active).sum();
    let me = s.membership.me;
    let mut members = Vec::new();
    // The configured nodes, and any that joined later.
    let mut ids = s.membership.node_ids();
    ids.extend(s.directory.connected_peers());
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let entry = s.addrs(id);
        let status = if id == me {
            if s.draining.load(Ordering::Acquire) {
                "leaving"
            } else {
                "up"
            }
        } else {
            s.liveness.status(id).name()
        };
        members.push(MemberDto {
            id,
            cluster_addr: entry.as_ref().map(|n| n.cluster_addr.clone()),
            http_addr: entry.map(|n| n.http_addr),
            seen_by: None,
            status: status.to_string(),
            shards: map.shards_of(id).len(),
            entities: (id == me).then_some(local_entities),
        });
    }
    Ok(MembersDto { me, members })
}

/// Each peer's own view (`GET /admin/cluster/members?local=true` on its admin endpoint, with
/// this node's admin token), for the peers of the cluster file that answer in time.
async fn peer_views(s: &AdminState) -> Vec<MembersDto> {
    ask_peers(s, "/admin/cluster/members?local=true").await
}

/// `GET path` on each peer's admin endpoint (the peers of the cluster file, with this node's
/// admin token), all at once: the answers that came in time and parsed. None on the
/// simulator's network.
pub(crate) async fn ask_peers<T>(s: &AdminState, path: &str) -> Vec<T>
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    // The simulator's nodes (no cluster file entries) have no admin endpoint on a real
    // network: nothing is asked there.
    let Some(token) = s.token.clone().filter(|_| !s.file_nodes.is_empty()) else {
        return Vec::new();
    };
    let Ok(client) = reqwest::Client::builder()
        .timeout(PEER_VIEW_TIMEOUT)
        .build()
    else {
        return Vec::new();
    };
    let mut asks = tokio::task::JoinSet::new();
    let me = s.membership.me;
    let peers = s.membership.node_ids().into_iter().filter(|id| *id != me);
    for peer in peers.filter_map(|id| s.addrs(id)) {
        let url = format!("http://{}{path}", peer.admin_addr);
        let ask = client.get(url).bearer_auth(&token).send();
        asks.spawn(async move {
            let answer = ask.await.ok()?.error_for_status().ok()?;
            answer.json::<T>().await.ok()
        });
    }
    let mut views = Vec::new();
    while let Some(view) = asks.join_next().await {
        views.extend(view.ok().flatten());
    }
    views
}
