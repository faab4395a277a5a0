//! The caller's notifications.

use crate::dto::{rfc3339, NotificationDto, NotificationList};
use crate::extract::Caller;
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::inbox::InboxCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

/// Lists the caller's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", operation_id = "list_notifications", tag = "notifications", security(("bearer" = [])), responses((status = 200, body = NotificationList)))]
pub async fn list(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
) -> ApiResult<Json<NotificationList>> {
    let Reply::Inbox(items) = st
        .client
        .ask(
            EntityRef::new(EntityKind::Inbox, caller.user_id),
            Command::Inbox(InboxCommand::Get),
        )
        .await?
    else {
        return Err(Problem::internal("unexpected reply to Inbox::Get"));
    };
    let items = items
        .into_iter()
        .rev()
        .map(|n| NotificationDto {
            channel: n.channel.name().into(),
            kind: n.kind,
            order_id: n.order_id,
            at: rfc3339(n.at_ms),
        })
        .collect();
    Ok(Json(NotificationList { items }))
}
