//! Dead letters on the admin endpoint: messages this node's relay gave up on (their
//! receiver refused them), listed, and discarded by an operator. Dead letters are kept on
//! the node whose relay gave up (they are not replicated), so both act on this node only.

use crate::admin::{require_mutations, AdminState};
use crate::admin_dto::{DeadLetterDto, DeadLettersDto};
use agora_http_edge::dto::rfc3339;
use agora_http_edge::problem::Problem;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

/// `GET /admin/dead-letters`: the newest 100 messages given up on, on this node.
#[utoipa::path(get, path = "/admin/dead-letters", operation_id = "list_dead_letters", tag = "dead letters", security(("bearer" = [])),
    responses((status = 200, body = DeadLettersDto, description = "this node's dead letters, newest 100"),
              (status = 500, description = "the store could not be read")))]
pub async fn dead_letters(
    State(s): State<Arc<AdminState>>,
) -> Result<Json<DeadLettersDto>, Problem> {
    let letters = s
        .store
        .dead_letters(100)
        .map_err(|e| Problem::internal(e.to_string()))?;
    let items = letters
        .into_iter()
        .map(|(id, d)| DeadLetterDto {
            at: rfc3339(d.at_ms),
            reason: d.reason,
            from: d.message.from.to_string(),
            id,
            msg_id: d.message.id,
            topic: d.message.topic,
        })
        .collect();
    Ok(Json(DeadLettersDto { items }))
}

/// `DELETE /admin/dead-letters/{id}`: discards dead letter `id` of this node for good,
/// through the store's writer. Audited (a WARN naming the message) and counted
/// (`agora_dead_letters_discarded_total`).
#[utoipa::path(delete, path = "/admin/dead-letters/{id}", operation_id = "discard_dead_letter", tag = "dead letters", security(("bearer" = [])),
    params(("id" = u64, Path, description = "the dead letter's id (`id` in the list)")),
    responses((status = 204, description = "discarded"),
              (status = 400, description = "malformed id"),
              (status = 403, description = "mutating routes are disabled (admin_mutations), or no admin token is configured"),
              (status = 404, description = "no such dead letter on this node"),
              (status = 500, description = "the store could not be read"),
              (status = 503, description = "the store could not write; retry")))]
pub async fn discard(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, Problem> {
    require_mutations(&s)?;
    let letter = s
        .store
        .dead_letter(id)
        .map_err(|e| Problem::internal(e.to_string()))?
        .ok_or_else(|| Problem::not_found(format!("no dead letter {id} on this node")))?;
    s.handoff
        .writer
        .discard_dead_letter(id)
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::warn!(
        id,
        msg_id = %letter.message.id,
        topic = %letter.message.topic,
        from = %letter.message.from,
        "dead letter discarded by an operator"
    );
    metrics::counter!("agora_dead_letters_discarded_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}
