//! Dead letters on the admin endpoint: messages this node's relay gave up on (their
//! receiver refused them), listed, replayed and discarded by an operator. Dead letters are
//! kept on the node whose relay gave up (they are not replicated), so each route acts on this
//! node's dead letters only; a replay still reaches the receiver wherever it lives.

use crate::admin::{require_mutations, AdminState};
use crate::admin_dto::{DeadLetterDto, DeadLettersDto};
use agora_actors::message::Destination;
use agora_http_edge::dto::rfc3339;
use agora_http_edge::problem::Problem;
use agora_runtime::external::ExternalServices;
use agora_runtime::relay::{redeliver, Redelivery};
use agora_runtime::Deliver;
use agora_store::record::DeadLetter;
use agora_store::StoreError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;
use std::time::Duration;

/// Longest a replay waits for its receiver's answer before it answers 503 (the delivery may
/// still take effect; a replay again is then harmless).
const REPLAY_TIMEOUT: Duration = Duration::from_secs(15);

/// What a replay delivers by: the relay's own delivery path.
#[derive(Clone)]
pub struct Replayer {
    /// Entity receivers wherever they live (the cluster router).
    pub region: Arc<dyn Deliver>,
    /// Outside receivers (payment gateway, courier, notification sinks).
    pub external: ExternalServices,
}

/// How a replay ended: the `outcome` label of `agora_dead_letters_replayed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The receiver took the message (or had already); the dead letter is gone.
    Delivered,
    /// The receiver refused it again; the dead letter is kept.
    Refused,
    /// The receiver could not be reached, or the dead letter could not be removed; kept.
    Unavailable,
}

impl ReplayOutcome {
    /// Every outcome (each counter series starts at zero).
    pub const ALL: [ReplayOutcome; 3] = [
        ReplayOutcome::Delivered,
        ReplayOutcome::Refused,
        ReplayOutcome::Unavailable,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ReplayOutcome::Delivered => "delivered",
            ReplayOutcome::Refused => "refused",
            ReplayOutcome::Unavailable => "unavailable",
        }
    }
}

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
            to: match &d.message.to {
                Destination::Entity(e) => e.to_string(),
                Destination::External => "outside".to_string(),
            },
            id,
            msg_id: d.message.id,
            topic: d.message.topic,
        })
        .collect();
    Ok(Json(DeadLettersDto { items }))
}

/// Dead letter `id` of this node, once mutating routes are allowed: 403 if they are not,
/// 404 if there is no such letter, 500 if the store cannot be read.
fn mutable_dead_letter(
    s: &AdminState,
    id: u64,
) -> Result<agora_store::record::DeadLetter, Problem> {
    require_mutations(s)?;
    s.store
        .dead_letter(id)
        .map_err(|e| Problem::internal(e.to_string()))?
        .ok_or_else(|| Problem::not_found(format!("no dead letter {id} on this node")))
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
    let letter = mutable_dead_letter(&s, id)?;
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

/// `POST /admin/dead-letters/{id}/replay`: delivers dead letter `id`'s message once more to
/// its receiver, through the relay's delivery path (wherever the receiver lives), and removes
/// the dead letter, through the store's writer, only once the receiver has taken it. The
/// message keeps its id, so a replay of one that did take effect is harmless. Audited (a
/// WARN naming the message) and counted (`agora_dead_letters_replayed_total{outcome}`).
#[utoipa::path(post, path = "/admin/dead-letters/{id}/replay", operation_id = "replay_dead_letter", tag = "dead letters", security(("bearer" = [])),
    params(("id" = u64, Path, description = "the dead letter's id (`id` in the list)")),
    responses((status = 204, description = "the receiver took the message (or had taken it already: it dedupes by message id); the dead letter is removed"),
              (status = 400, description = "malformed id"),
              (status = 403, description = "mutating routes are disabled (admin_mutations), or no admin token is configured"),
              (status = 404, description = "no such dead letter on this node"),
              (status = 409, description = "the receiver refused the message again (`reason` holds its answer); the dead letter is kept"),
              (status = 500, description = "the store could not be read"),
              (status = 503, description = "the receiver could not be reached (no owner or leader, a timeout), or the dead letter could not be removed after its delivery; it is kept, retry after Retry-After")))]
pub async fn replay(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, Problem> {
    let letter = mutable_dead_letter(&s, id)?;
    let replayer = &s.replayer;
    let delivery = redeliver(
        replayer.region.clone(),
        replayer.external.clone(),
        &s.handoff.writer,
        letter.message.clone(),
    );
    let redelivery = tokio::time::timeout(REPLAY_TIMEOUT, delivery)
        .await
        .unwrap_or_else(|_| {
            Redelivery::Unreachable(format!("no answer within {REPLAY_TIMEOUT:?}"))
        });
    let removed = match &redelivery {
        Redelivery::Accepted => s.handoff.writer.discard_dead_letter(id).await,
        _ => Ok(()),
    };
    let (outcome, answer) = replay_answer(id, &letter, redelivery, removed);
    audit_replay(id, &letter, outcome);
    metrics::counter!("agora_dead_letters_replayed_total", "outcome" => outcome.label())
        .increment(1);
    answer
}

/// The WARN that audits one replay.
fn audit_replay(id: u64, letter: &DeadLetter, outcome: ReplayOutcome) {
    let m = &letter.message;
    let to = match &m.to {
        agora_actors::Destination::Entity(e) => e.to_string(),
        agora_actors::Destination::External => "an outside service".to_string(),
    };
    tracing::warn!(
        id,
        msg_id = %m.id,
        topic = %m.topic,
        from = %m.from,
        to,
        outcome = outcome.label(),
        "dead letter replayed by an operator"
    );
}

/// What a replay answers, given how its delivery ended and (once delivered) whether the
/// dead letter was removed.
fn replay_answer(
    id: u64,
    letter: &DeadLetter,
    redelivery: Redelivery,
    removed: Result<(), StoreError>,
) -> (ReplayOutcome, Result<StatusCode, Problem>) {
    let msg_id = letter.message.id.clone();
    match (redelivery, removed) {
        (Redelivery::Accepted, Ok(())) => (ReplayOutcome::Delivered, Ok(StatusCode::NO_CONTENT)),
        (Redelivery::Accepted, Err(e)) => (
            ReplayOutcome::Unavailable,
            Err(Problem::unavailable(format!(
                "message {msg_id} was delivered but dead letter {id} could not be removed ({e}); \
                 replaying it again is harmless (its receiver dedupes by message id)"
            ))
            .with("msg_id", msg_id)),
        ),
        (Redelivery::Refused(reason), _) => (
            ReplayOutcome::Refused,
            Err(Problem::new(
                StatusCode::CONFLICT,
                "replay-refused",
                "Replay refused by the receiver",
                format!(
                    "the receiver refused message {msg_id} again: {reason}; dead letter {id} is kept"
                ),
            )
            .with("reason", reason)
            .with("msg_id", msg_id)),
        ),
        (Redelivery::Unreachable(reason), _) => (
            ReplayOutcome::Unavailable,
            Err(Problem::unavailable(format!(
                "message {msg_id} could not be delivered: {reason}; dead letter {id} is kept"
            ))
            .with("reason", reason)
            .with("msg_id", msg_id)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::account::AccountCommand;
    use agora_actors::message::Body;
    use agora_actors::{Command, Destination, EntityKind, EntityRef, OutboxMessage};
    use agora_store::record::FORMAT_VERSION;

    fn letter() -> DeadLetter {
        let from = EntityRef::new(EntityKind::Order, "o1");
        DeadLetter {
            format: FORMAT_VERSION,
            at_ms: 1,
            reason: "not found: account u1".into(),
            message: OutboxMessage {
                id: "order/o1#3.0".into(),
                from,
                to: Destination::Entity(EntityRef::new(EntityKind::Account, "u1")),
                deliver_at_ms: 0,
                topic: "ORDER_PLACED".into(),
                body: Body::Command(Command::Account(AccountCommand::Get)),
            },
        }
    }

    #[test]
    fn a_delivered_and_removed_replay_answers_no_content() {
        let (outcome, answer) = replay_answer(7, &letter(), Redelivery::Accepted, Ok(()));
        assert_eq!(outcome, ReplayOutcome::Delivered);
        assert!(matches!(answer, Ok(StatusCode::NO_CONTENT)), "{answer:?}");
    }

    #[test]
    fn a_refusal_is_a_conflict_naming_the_receivers_reason_and_keeps_the_letter() {
        let refused = Redelivery::Refused("not found: account u1".into());
        let (outcome, answer) = replay_answer(7, &letter(), refused, Ok(()));
        assert_eq!(outcome, ReplayOutcome::Refused);
        let Err(p) = answer else {
            panic!("a refusal answered {answer:?}")
        };
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert_eq!(p.extra["reason"], "not found: account u1");
        assert_eq!(p.extra["msg_id"], "order/o1#3.0");
        assert!(p.detail.contains("is kept"), "{}", p.detail);
        assert_eq!(p.retry_after, None, "a refusal is not retried by waiting");
    }

    #[test]
    fn an_unreachable_receiver_or_a_failed_removal_is_503_with_retry_after() {
        let gone = Redelivery::Unreachable("no leader for shard 3".into());
        let (outcome, answer) = replay_answer(7, &letter(), gone, Ok(()));
        assert_eq!(outcome, ReplayOutcome::Unavailable);
        let p = answer.err().map(|p| (p.status, p.retry_after));
        assert_eq!(p, Some((StatusCode::SERVICE_UNAVAILABLE, Some(1))));

        let stuck = Err(StoreError::Redb("the store is read-only".into()));
        let (outcome, answer) = replay_answer(7, &letter(), Redelivery::Accepted, stuck);
        assert_eq!(outcome, ReplayOutcome::Unavailable);
        let Err(p) = answer else {
            panic!("a failed removal answered {answer:?}")
        };
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(p.detail.contains("harmless"), "{}", p.detail);
    }

    #[test]
    fn every_outcome_has_its_own_label() {
        let labels: std::collections::BTreeSet<_> =
            ReplayOutcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), ReplayOutcome::ALL.len());
    }
}
