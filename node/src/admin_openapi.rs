//! The admin API's OpenAPI document, generated from the handlers' annotations: served at
//! `GET /admin/openapi.json` (open: it is a contract, not data) and printed by
//! `agora openapi --admin`.

use crate::admin_dto::*;
use crate::{
    admin, admin_dead_letters, admin_faults, admin_members, admin_operations, admin_replicas,
    console,
};
use agora_http_edge::dto::ProblemDto;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The admin bearer token (`AGORA_ADMIN_TOKEN`, or `admin_token` in the cluster file), and
/// the answers every token-protected operation may give (401 without it, 403 when the node
/// has none configured) and every operation with a body (400, 415, 422).
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        agora_http_edge::openapi::add_problem_responses(openapi, |op| {
            let mut common = Vec::new();
            if op.security.is_some() {
                common.push(("401", "the admin bearer token is missing or wrong"));
                common.push(("403", "no admin token is configured on this node"));
            }
            if op.request_body.is_some() {
                common.push(("400", "malformed body"));
                common.push(("415", "body is not application/json"));
                common.push(("422", "the body does not match the schema"));
            }
            common
        });
    }
}

/// The admin API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agora admin API",
        description = "The operators' endpoint, on the admin port. /healthz, /readyz, /metrics and \
            this document are open; every other /admin route needs the admin bearer token, and \
            mutating routes answer only with admin_mutations = true in the cluster file. Every \
            error is application/problem+json (RFC 9457). Drain, move and remove answer 202 \
            with an operation (Location: /admin/operations/{id}) that GET \
            /admin/operations/{id} follows to its end; operations live in the memory of the \
            node that accepted them and do not survive its restart. A dead letter's replay is \
            one delivery, answered once its receiver has answered (within 15 s)."
    ),
    paths(
        admin::healthz, admin::readyz, admin::metrics,
        admin_members::members, admin::shards, admin::entity,
        admin_dead_letters::dead_letters, admin_dead_letters::discard,
        admin_dead_letters::replay,
        admin::drain, admin::move_shard, admin::mint_join_token,
        admin_replicas::replicas, admin_replicas::remove_member,
        console::settings, admin_faults::partition,
        admin_operations::list_operations, admin_operations::get_operation,
    ),
    components(schemas(
        MembersDto, MemberDto, ShardsDto, RaftDto, ShardDto, EntityDto, AppliedMessageDto,
        DeadLettersDto, DeadLetterDto, MoveRequest, MovedDto, LeaderMovedDto, OwnerMovedDto,
        JoinTokenRequest, JoinTokenDto, DrainedDto, RemovingDto, ConsoleSettingsDto,
        PartitionDto, ReplicasDto, GroupDto, ReceivedDto, ProblemDto,
        crate::replica_moves::ReplicaProgress, admin_faults::Partition,
        OperationDto, OperationsDto, OperationKind, OperationState, ProgressDto, ProgressUnit,
        OperationResult, OperationProblemDto,
    )),
    modifiers(&AdminToken)
)]
pub struct AdminApiDoc;

/// The whole admin document.
pub fn document() -> utoipa::openapi::OpenApi {
    AdminApiDoc::openapi()
}

/// `GET /admin/openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Routes served but deliberately left out of the document: the document itself and the
/// console's static files. Every other route must be documented (checked by a test).
pub const UNDOCUMENTED_ROUTES: &[&str] = &[
    "/admin/openapi.json",
    "/console",
    "/console/",
    "/console/app.js",
    "/console/app.css",
];

#[cfg(test)]
mod tests;
