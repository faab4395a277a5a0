//! `PUT /admin/faults/partition`: cuts this node off from peers, for chaos tests of a real
//! cluster (only with `fault_injection = true` in the cluster file). The node stops finding
//! the named peers' gateways, so it neither calls them nor counts them as reachable; a
//! partition is made by cutting both sides. An empty list heals.

use crate::admin::AdminState;
use crate::admin_dto::PartitionDto;
use agora_http_edge::problem::Problem;
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

/// The peers to be cut off from.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct Partition {
    /// Peer node ids (empty: heal).
    pub cut_off: Vec<u64>,
}

/// `PUT /admin/faults/partition`: answers the peers this node is now cut off from.
#[utoipa::path(put, path = "/admin/faults/partition", operation_id = "put_partition", tag = "faults", security(("bearer" = [])),
    request_body = Partition,
    responses((status = 200, body = PartitionDto, description = "the peers this node is now cut off from"),
              (status = 403, description = "fault injection is disabled (fault_injection), or no admin token is configured")))]
pub async fn partition(
    State(s): State<Arc<AdminState>>,
    body: Result<Json<Partition>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PartitionDto>, Problem> {
    if !s.fault_injection {
        return Err(Problem::forbidden(
            "fault injection is disabled: set fault_injection = true in the cluster file (chaos tests only)",
        ));
    }
    let Json(body) = body.map_err(Problem::from)?;
    s.directory.cut_off(body.cut_off.into_iter().collect());
    let cut_off: Vec<u64> = s.directory.cut_off_peers().into_iter().collect();
    tracing::warn!(?cut_off, "fault injection: this node is cut off from peers");
    Ok(Json(PartitionDto { cut_off }))
}
