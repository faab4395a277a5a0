//! The operators' endpoint, on its own port. `/healthz`, `/readyz` and `/metrics` are open
//! (for probes and scrapers), and so are the operator console's static files (`/console`,
//! whose page calls `/admin` with the token); everything under `/admin` needs the admin
//! bearer token, and mutating routes answer only when the cluster file enables them.

use crate::admin_dto::*;
use crate::admin_operations::{launch, Target};
use agora_actors::{EntityKind, EntityRef};
use agora_cluster::directory::Directory;
use agora_cluster::shard_map::SharedShardMap;
use agora_cluster::Membership;
use agora_cluster_config::cluster::NodeEntry;
use agora_http_edge::dto::rfc3339;
use agora_http_edge::problem::Problem;
use agora_runtime::region::Region;
use agora_store::keys::entity_key;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the admin endpoint reads.
pub struct AdminState {
    /// Set once the node has recovered its store and serves.
    pub ready: AtomicBool,
    /// Whether enough of the cluster is reachable.
    pub peers_ready: Box<dyn Fn() -> bool + Send + Sync>,
    /// Renders the metrics.
    pub metrics: Option<PrometheusHandle>,
    /// The store.
    pub store: agora_store::Store,
    /// The bearer token `/admin` routes need (`None`: they are closed).
    pub token: Option<String>,
    /// Whether mutating routes (drain, move) are enabled.
    pub mutations: bool,
    /// Whether `PUT /admin/faults/partition` may cut this node off (chaos tests only).
    pub fault_injection: bool,
    /// Who is in the cluster.
    pub membership: Membership,
    /// The cluster file's node entries, host names kept; empty on the simulator's network.
    pub file_nodes: Vec<agora_cluster_config::cluster::ClusterNode>,
    /// The shard map.
    pub map: SharedShardMap,
    /// The local shards.
    pub region: Region,
    /// Peers' gateways.
    pub directory: Directory,
    /// This node's member of the shard-map group (`None` for a single node).
    pub raft: Option<agora_cluster::raft::Raft>,
    /// Moves shards away from this node.
    pub handoff: agora_cluster::handoff::Handoff,
    /// What this node thinks of its peers.
    pub liveness: agora_cluster::liveness::Liveness,
    /// Set while this node drains (it is then not ready).
    pub draining: Arc<AtomicBool>,
    /// Reaches entities wherever they live (readiness asks for the seeded admin account).
    pub client: Arc<dyn agora_actors::client::EntityClient>,
    /// Set once the seeded admin account has been seen: a login can be served.
    pub admin_seen: AtomicBool,
    /// Who may join the cluster (`None` for a single node).
    pub join_policy: Option<agora_cluster::join_token::JoinPolicy>,
    /// The time seam (join token expiry).
    pub clock: Arc<dyn agora_actors::seams::Clock>,
    /// This node's replicas (`None` unless shards are replicated).
    pub replicas: Option<ReplicaView>,
    /// Which replicated shards this node serves, and their leadership transfers (`None`
    /// unless shards are replicated).
    pub leadership: Option<agora_replication::Serving>,
    /// The drains, moves and removals this node accepted (in memory only).
    pub operations: Arc<crate::admin_operations::Operations>,
    /// Delivers a dead letter's message again (`POST /admin/dead-letters/{id}/replay`).
    pub replayer: crate::admin_dead_letters::Replayer,
}

impl AdminState {
    /// Node `id`'s addresses as the cluster file writes them (a host name stays a name),
    /// else as its membership entry holds them; `None` for a node the file does not list.
    pub fn addrs(&self, id: u64) -> Option<NodeEntry<String>> {
        fn text<A: ToString>(n: &NodeEntry<A>) -> NodeEntry<String> {
            NodeEntry {
                id: n.id,
                cluster_addr: n.cluster_addr.to_string(),
                http_addr: n.http_addr.to_string(),
                admin_addr: n.admin_addr.to_string(),
                data_dir: n.data_dir.clone(),
            }
        }
        match self.file_nodes.iter().find(|n| n.id == id) {
            Some(n) => Some(text(n)),
            None => self.membership.nodes.iter().find(|n| n.id == id).map(text),
        }
    }
}

/// What the admin endpoint shows of this node's replicas.
pub struct ReplicaView {
    /// The node's groups.
    pub groups: agora_replication::Groups,
    /// How far its replicas are from the placement.
    pub progress: crate::replica_moves::SharedProgress,
    /// Replicas per shard (the cluster file's `replication_factor`).
    pub replication_factor: usize,
    /// The cluster file's placement, which holds until one is agreed (empty on a joiner).
    pub file_placement: Vec<Vec<u64>>,
}

/// The admin router: the open routes, and the protected ones behind the admin token.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = protected_routes().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_token,
    ));
    open_routes()
        .merge(protected)
        .fallback(|| async { Problem::not_found("no such admin route") })
        .with_state(state)
}

/// The routes open to all: probes, metrics, the admin OpenAPI document and the console's
/// files. Each one is in the admin OpenAPI document (`crate::admin_openapi`) unless listed in
/// `crate::admin_openapi::UNDOCUMENTED_ROUTES`; a test checks it.
pub fn open_routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/admin/openapi.json",
            get(crate::admin_openapi::openapi_json),
        )
        .merge(crate::console::router())
}

/// The routes behind the admin bearer token, before it is required. Each one is in the admin
/// OpenAPI document with the bearer security scheme; a test checks it.
pub fn protected_routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/admin/cluster/members", get(crate::admin_members::members))
        .route("/admin/cluster/shards", get(shards))
        .route("/admin/entities/{kind}/{id}", get(entity))
        .route(
            "/admin/dead-letters",
            get(crate::admin_dead_letters::dead_letters),
        )
        .route(
            "/admin/dead-letters/{id}",
            axum::routing::delete(crate::admin_dead_letters::discard),
        )
        .route(
            "/admin/dead-letters/{id}/replay",
            post(crate::admin_dead_letters::replay),
        )
        .route("/admin/cluster/members/{id}/drain", post(drain))
        .route("/admin/shards/{shard}/move", post(move_shard))
        .route("/admin/cluster/join-tokens", post(mint_join_token))
        .route(
            "/admin/cluster/replicas",
            get(crate::admin_replicas::replicas),
        )
        .route(
            "/admin/cluster/members/{id}/remove",
            post(crate::admin_replicas::remove_member),
        )
        .route(
            "/admin/operations",
            get(crate::admin_operations::list_operations),
        )
        .route(
            "/admin/operations/{id}",
            get(crate::admin_operations::get_operation),
        )
        .route("/admin/console/settings", get(crate::console::settings))
        .route(
            "/admin/faults/partition",
            axum::routing::put(crate::admin_faults::partition),
        )
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let Some(expected) = s.token.as_deref() else {
        return Problem::forbidden("no admin token is configured: set AGORA_ADMIN_TOKEN or admin_token in the cluster file").into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same_secret(t.as_bytes(), expected.as_bytes()) => next.run(req).await,
        _ => Problem::unauthorized("the admin bearer token is required").into_response(),
    }
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "probes",
    responses((status = 200, description = "the process is up", body = String, content_type = "text/plain", example = "ok")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: whether this node serves (store recovered, not draining, map known, a
/// majority reachable, the admin account seeded).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "probes",
    responses((status = 200, description = "ready to serve", body = String, content_type = "text/plain", example = "ready"),
              (status = 503, description = "not ready (starting, draining, or too few peers reachable)", body = String, content_type = "text/plain", example = "not ready")))]
pub(crate) async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    // Ready: store recovered and serving, not draining, the shard map known (a joining node
    // has epoch 0 until the agreed map arrives), and a majority of the cluster reachable.
    let map_known = s.map.read().is_ok_and(|m| m.epoch >= 1);
    if s.ready.load(Ordering::Acquire)
        && !s.draining.load(Ordering::Acquire)
        && map_known
        && (s.peers_ready)()
        && admin_seeded(&s).await
    {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Whether the seeded admin account exists (in a cluster the lowest node seeds it in the
/// background, so a node can be up before a login can be served). Asked once it is seen.
async fn admin_seeded(s: &AdminState) -> bool {
    if s.admin_seen.load(Ordering::Acquire) {
        return true;
    }
    let admin = EntityRef::new(
        EntityKind::Account,
        agora_actors::ids::user_id_for_email(crate::seed::ADMIN_EMAIL),
    );
    let get = agora_actors::Command::Account(agora_actors::account::AccountCommand::Get);
    let seen = s.client.ask(admin, get).await.is_ok();
    if seen {
        s.admin_seen.store(true, Ordering::Release);
    }
    seen
}

/// `GET /metrics`: the Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "probes",
    responses((status = 200, description = "every metric, in Prometheus's text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    metrics::gauge!("agora_region_requests_in_flight").set(s.region.in_flight() as f64);
    if let Ok((entity_rows, outbox, dead)) = s.store.counts() {
        metrics::gauge!("agora_store_entity_rows").set(entity_rows as f64);
        metrics::gauge!("agora_store_outbox_rows").set(outbox as f64);
        metrics::gauge!("agora_store_dead_letters").set(dead as f64);
    }
    if let Some(view) = &s.replicas {
        let health = crate::admin_replicas::group_health(view);
        metrics::gauge!("agora_replication_groups_without_leader")
            .set(health.without_leader as f64);
        metrics::gauge!("agora_replication_groups_under_replicated")
            .set(health.under_replicated as f64);
        metrics::gauge!("agora_replication_groups_led").set(health.led as f64);
    }
    let body = s.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub(crate) fn map_snapshot(s: &AdminState) -> Result<agora_cluster::shard_map::ShardMap, Problem> {
    s.map
        .read()
        .map(|m| m.clone())
        .map_err(|_| Problem::internal("shard map lock poisoned"))
}

/// `GET /admin/cluster/shards`: the shard map as this node knows it.
#[utoipa::path(get, path = "/admin/cluster/shards", operation_id = "list_shards", tag = "cluster", security(("bearer" = [])),
    responses((status = 200, body = ShardsDto, description = "every shard with its owner, and the shard map group"),
              (status = 500, description = "the shard map could not be read")))]
pub(crate) async fn shards(State(s): State<Arc<AdminState>>) -> Result<Json<ShardsDto>, Problem> {
    let map = map_snapshot(&s)?;
    let me = s.membership.me;
    let local: std::collections::HashMap<u32, usize> = s
        .region
        .stats()
        .await
        .into_iter()
        .map(|(shard, x)| (shard, x.active))
        .collect();
    let shards: Vec<ShardDto> = map
        .owners
        .iter()
        .enumerate()
        .map(|(shard, owner)| {
            let up = *owner == me || s.directory.gateway(*owner).is_some();
            let entities = if *owner == me {
                local.get(&(shard as u32)).copied()
            } else {
                None
            };
            let status = if up { "serving" } else { "unavailable" };
            ShardDto {
                shard,
                owner: *owner,
                status: status.to_string(),
                entities,
            }
        })
        .collect();
    let raft = s.raft.as_ref().map(|r| {
        let st = agora_cluster::raft::status(r);
        RaftDto {
            leader: st.leader,
            term: st.term,
            last_applied: st.last_applied,
        }
    });
    Ok(Json(ShardsDto {
        epoch: map.epoch,
        shards,
        raft,
    }))
}

/// `GET /admin/entities/{kind}/{id}`: one entity as stored on this node, its owner.
#[utoipa::path(get, path = "/admin/entities/{kind}/{id}", operation_id = "get_entity", tag = "entities", security(("bearer" = [])),
    params(("kind" = String, Path, description = "entity kind, e.g. `order`, `account`, `product`"), ("id" = String, Path, description = "entity id (1..=128 characters)")),
    responses((status = 200, body = EntityDto, description = "the entity, credentials redacted"),
              (status = 404, description = "no such kind, or the entity is not stored"),
              (status = 421, description = "another node owns the entity's shard: the problem names it (`owner`, `owner_admin_addr`)"),
              (status = 500, description = "the store could not be read")))]
pub(crate) async fn entity(
    State(s): State<Arc<AdminState>>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<EntityDto>, Problem> {
    let kind = EntityKind::from_name(&kind)
        .ok_or_else(|| Problem::not_found(format!("no entity kind {kind:?}")))?;
    if id.is_empty() || id.len() > 128 {
        return Err(Problem::not_found("no such entity"));
    }
    let entity = EntityRef::new(kind, id);
    let map = map_snapshot(&s)?;
    let shard = entity.shard(map.owners.len() as u32);
    let owner = map.owner(shard).unwrap_or_default();
    if owner != s.membership.me {
        let addr = s.addrs(owner).map(|n| n.admin_addr);
        return Err(Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "not-owner",
            "Not the owner",
            format!("shard {shard} is owned by node {owner}"),
        )
        .with("owner", owner)
        .with("owner_admin_addr", addr));
    }
    let key = entity_key(shard, &entity);
    let record = s
        .store
        .entity(&key)
        .map_err(|e| Problem::internal(e.to_string()))?
        .ok_or_else(|| Problem::not_found(format!("{entity} is not stored")))?;
    let messages = s
        .store
        .applied_messages(&key, 50)
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(EntityDto {
        kind: kind.name().to_string(),
        id: entity.id.to_string(),
        shard,
        owner,
        format: record.format,
        seq: record.seq,
        epoch: record.epoch,
        written_at: rfc3339(record.written_at_ms),
        state: redacted(record.state.to_json()),
        applied_messages: messages
            .into_iter()
            .map(|(msg_id, at_ms)| AppliedMessageDto {
                msg_id,
                at: rfc3339(at_ms),
            })
            .collect(),
    }))
}

/// Keys whose values an entity dump never shows: password hashes and refresh-token hashes
/// (live and rotated) are credentials an operator has no use for.
const SECRET_KEYS: [&str; 4] = ["password_hash", "refresh_tokens", "rotated", "hash"];

/// An entity state for an operator's eyes: credentials replaced by `"[redacted]"`, card
/// numbers shown by their last four digits only.
fn redacted(mut state: Value) -> Value {
    redact_in(&mut state);
    state
}

fn redact_in(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) {
                    *value = Value::String("[redacted]".into());
                } else if key == "number" && value.as_str().is_some_and(looks_like_card) {
                    let digits = value.as_str().unwrap_or_default();
                    let last4 = &digits[digits.len().saturating_sub(4)..];
                    *value = Value::String(format!("**** {last4}"));
                } else {
                    redact_in(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in),
        _ => {}
    }
}

/// Whether `s` is a card number (12 to 19 digits).
fn looks_like_card(s: &str) -> bool {
    (12..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses a mutating route unless the cluster file enables them.
pub(crate) fn require_mutations(s: &AdminState) -> Result<(), Problem> {
    if s.mutations {
        return Ok(());
    }
    Err(Problem::forbidden(
        "mutating admin routes are disabled: set admin_mutations = true in the cluster file",
    ))
}

/// `POST /admin/shards/{shard}/move`: moves a shard to another node (replicated shards: moves
/// its lead, asked of the shard's leader). A move that can be made answers 202 at once with
/// the operation (`Location: /admin/operations/{id}`), which follows it to its end.
#[utoipa::path(post, path = "/admin/shards/{shard}/move", operation_id = "move_shard", tag = "shards", security(("bearer" = [])),
    params(("shard" = u32, Path, description = "the shard")), request_body = MoveRequest,
    responses((status = 202, body = OperationDto, description = "accepted: the move runs; its result is the shard's new leader (replicated shards) or owner and the map's epoch",
                 headers(("Location" = String, description = "the operation: `/admin/operations/{id}`"))),
              (status = 400, description = "malformed path or body"),
              (status = 403, description = "mutating routes are disabled (admin_mutations), or no admin token is configured"),
              (status = 409, description = "refused: the move or leadership transfer cannot be made (the problem may name the `leader` to ask)"),
              (status = 429, description = "too many operations are running on this node")))]
pub(crate) async fn move_shard(
    State(s): State<Arc<AdminState>>,
    Path(shard): Path<u32>,
    body: Result<Json<MoveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Problem> {
    require_mutations(&s)?;
    let Json(req) = body.map_err(Problem::from)?;
    let to = req.to;
    let what = (
        OperationKind::Move,
        Target {
            node: None,
            shard: Some(shard),
            to: Some(to),
        },
    );
    let one_shard = (1, ProgressUnit::Shards);
    if let Some(leadership) = s.leadership.clone() {
        // Replicated shards move their lead, not their data: a leader transfer.
        leadership
            .check_transfer(shard, to)
            .map_err(transfer_refused)?;
        return launch(&s.operations, what, one_shard, move |_| async move {
            leadership
                .transfer(shard, to)
                .await
                .map_err(transfer_refused)?;
            let moved = LeaderMovedDto { shard, leader: to };
            Ok(OperationResult::Moved(MovedDto::Leader(moved)))
        });
    }
    s.handoff
        .check_move(shard, to)
        .map_err(|e| move_problem(e, "move-refused", "Move refused"))?;
    let handoff = s.handoff.clone();
    launch(&s.operations, what, one_shard, move |_| async move {
        let epoch = handoff
            .move_shard(shard, to)
            .await
            .map_err(|e| move_problem(e, "move-refused", "Move refused"))?;
        let moved = OwnerMovedDto {
            shard,
            owner: to,
            epoch,
        };
        Ok(OperationResult::Moved(MovedDto::Owner(moved)))
    })
}

/// The 409 for a refused leadership transfer, naming the shard's leader when this node
/// knows it (where to ask instead).
fn transfer_refused(e: agora_replication::TransferRefused) -> Problem {
    let leader = match &e {
        agora_replication::TransferRefused::NotLeader { leader, .. } => *leader,
        _ => None,
    };
    let problem = Problem::new(
        StatusCode::CONFLICT,
        "transfer-refused",
        "Leadership transfer refused",
        e.to_string(),
    );
    match leader {
        Some(l) => problem.with("leader", l),
        None => problem,
    }
}

/// A failed move or drain as a problem: 409 when refused, else 503 (retry).
fn move_problem(
    e: agora_cluster::handoff::MoveError,
    slug: &'static str,
    title: &'static str,
) -> Problem {
    match e {
        agora_cluster::handoff::MoveError::Refused(why) => {
            Problem::new(StatusCode::CONFLICT, slug, title, why)
        }
        e => Problem::unavailable(e.to_string()),
    }
}

/// `POST /admin/cluster/join-tokens`: a token that admits node `node_id` to the cluster's
/// Raft group (`agora node --join --join-token …`) for an hour.
#[utoipa::path(post, path = "/admin/cluster/join-tokens", operation_id = "mint_join_token", tag = "cluster", security(("bearer" = [])),
    request_body = JoinTokenRequest,
    responses((status = 200, body = JoinTokenDto, description = "a token admitting the node for an hour"),
              (status = 403, description = "mutating routes are disabled (admin_mutations), or no admin token is configured"),
              (status = 409, description = "a single node (no cluster to join), or the node was removed for good")))]
pub(crate) async fn mint_join_token(
    State(s): State<Arc<AdminState>>,
    body: Result<Json<JoinTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<JoinTokenDto>, Problem> {
    require_mutations(&s)?;
    let Json(req) = body.map_err(Problem::from)?;
    let Some(policy) = &s.join_policy else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-a-cluster",
            "Not a cluster",
            "a single node has no cluster to join".to_string(),
        ));
    };
    let removed = s
        .map
        .read()
        .is_ok_and(|m| m.replicas.removed.contains(&req.node_id));
    if removed {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "node-removed",
            "Node removed",
            agora_cluster::join_token::JoinRefused::Removed(req.node_id).to_string(),
        ));
    }
    let expires_at_ms = s.clock.now_ms() + agora_cluster::join_token::JOIN_TOKEN_TTL_MS;
    tracing::info!(node = req.node_id, expires_at_ms, "join token minted");
    Ok(Json(JoinTokenDto {
        node_id: req.node_id,
        token: policy.mint(req.node_id, expires_at_ms),
        expires_at: rfc3339(expires_at_ms),
    }))
}

/// `POST /admin/cluster/members/{id}/drain`: moves every shard of this node away (asked of
/// the node itself); the node is then not ready. A drain that can start answers 202 at once
/// with the operation (`Location: /admin/operations/{id}`); asked again while it runs, the
/// same operation.
#[utoipa::path(post, path = "/admin/cluster/members/{id}/drain", operation_id = "drain_member", tag = "cluster", security(("bearer" = [])),
    params(("id" = u64, Path, description = "this node's id")),
    responses((status = 202, body = OperationDto, description = "accepted: the drain runs (or was running already); its progress counts the shards moved away",
                 headers(("Location" = String, description = "the operation: `/admin/operations/{id}`"))),
              (status = 400, description = "malformed node id"),
              (status = 403, description = "mutating routes are disabled (admin_mutations), or no admin token is configured"),
              (status = 409, description = "refused (e.g. replicated shards, or no node to move to)"),
              (status = 421, description = "another node: drain it through its own admin endpoint (`admin_addr`)"),
              (status = 429, description = "too many operations are running on this node")))]
pub(crate) async fn drain(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<u64>,
) -> Result<Response, Problem> {
    require_mutations(&s)?;
    if id != s.membership.me {
        let addr = s.addrs(id).map(|n| n.admin_addr);
        return Err(Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "not-this-node",
            "Not this node",
            format!("drain node {id} through its own admin endpoint"),
        )
        .with("admin_addr", addr));
    }
    let refused = |e| move_problem(e, "drain-refused", "Drain refused");
    let total = s.handoff.check_drain().map_err(refused)?;
    let what = (
        OperationKind::Drain,
        Target {
            node: Some(id),
            shard: None,
            to: None,
        },
    );
    let state = s.clone();
    launch(
        &s.operations,
        what,
        (total, ProgressUnit::Shards),
        move |op| async move {
            let report = move |moved, of| op.progress(moved, of);
            let moved = state
                .handoff
                .drain_reporting(&state.draining, &report)
                .await
                .map_err(refused)?;
            Ok(OperationResult::Drained(DrainedDto {
                node: id,
                moved_shards: moved,
                status: "drained".to_string(),
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_dumps_hide_credentials_and_card_numbers() {
        let state = serde_json::json!({"Account": {
            "profile": {"email": "a@b.c", "password_hash": "$argon2id$v=19$secret"},
            "security": {"refresh_tokens": [{"hash": "ab12", "issued_at_ms": 1}], "rotated": ["cd34"]},
            "payments": [{"method": {"Card": {"number": "4242424242424242"}}, "amount_minor": 298}],
        }});
        let shown = redacted(state).to_string();
        for secret in ["$argon2id", "ab12", "cd34", "4242424242424242"] {
            assert!(!shown.contains(secret), "{secret} is shown: {shown}");
        }
        assert!(shown.contains("**** 4242"), "{shown}");
        assert!(shown.contains("a@b.c") && shown.contains("298"), "{shown}");
    }
}
