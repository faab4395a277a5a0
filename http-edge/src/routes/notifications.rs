//! The caller's notifications.

use super::paging::{self, CursorList};
use crate::dto::{rfc3339, CursorQuery, NotificationDto, NotificationList};
use crate::extract::{ApiQuery, Caller};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::history;
use agora_actors::inbox::InboxCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

/// Lists the caller's notifications, newest first, `limit` at a time: all of them, by
/// following `next_cursor`.
#[utoipa::path(get, path = "/api/v1/notifications", operation_id = "list_notifications", tag = "notifications", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "page size, 1..=100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "the next_cursor of the previous page (opaque); absent for the newest notifications")),
    responses((status = 200, body = NotificationList), (status = 400, description = "malformed limit, or a cursor this list did not give"),
              (status = 401, description = "no valid bearer token"), (status = 422, description = "limit out of 1..=100")))]
pub async fn list(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CursorQuery>,
) -> ApiResult<Json<NotificationList>> {
    let (limit, before) =
        paging::by_position(CursorList::Notifications, q.limit, q.cursor.as_deref())?;
    let Reply::NotificationHistory(head) = st
        .client
        .ask(
            EntityRef::new(EntityKind::Inbox, caller.user_id.clone()),
            Command::Inbox(InboxCommand::History),
        )
        .await?
    else {
        return Err(Problem::internal("unexpected reply to Inbox::History"));
    };
    let page = history::read(st.client.as_ref(), &caller.user_id, &head, before, limit).await?;
    let items = page
        .items
        .into_iter()
        .map(|n| NotificationDto {
            channel: n.channel.name().into(),
            kind: n.kind,
            order_id: n.order_id,
            at: rfc3339(n.at_ms),
        })
        .collect();
    Ok(Json(NotificationList {
        items,
        next_cursor: page
            .next_before
            .map(|b| paging::encode(CursorList::Notifications, [b])),
    }))
}
