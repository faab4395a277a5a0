//! Admin operations (drain, move, remove): the request answers 202 with the operation and a
//! `Location`, and `GET /admin/operations/{id}` follows it until it ends.

use crate::{poll_until, Client, Resp, Value};
use std::time::Duration;

/// How long an operation may run before a test gives up on it.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks that `r` accepted an operation of `kind`: 202, `Location:
/// /admin/operations/{id}`, and the operation as the body. Returns its id.
#[track_caller]
pub fn accepted(r: &Resp, kind: &str, ctx: &str) -> String {
    assert_eq!(
        r.status, 202,
        "{ctx}: expected 202, got {}: {}",
        r.status, r.text
    );
    let id = r.str_field("id");
    assert_eq!(
        r.header("location"),
        Some(format!("/admin/operations/{id}").as_str()),
        "{ctx}: the Location names the operation: {:?}",
        r.headers
    );
    assert_eq!(r.body["kind"], kind, "{ctx}: {}", r.text);
    let state = r.body["state"].as_str().unwrap_or_default();
    assert!(
        ["running", "succeeded", "failed"].contains(&state),
        "{ctx}: state {state:?}: {}",
        r.text
    );
    id
}

/// Polls operation `id` on `ops` until it is no longer running (within
/// `OPERATION_TIMEOUT`); returns it as it ended.
pub async fn finished(ops: &Client, id: &str) -> Value {
    let path = format!("/admin/operations/{id}");
    poll_until(&format!("operation {id} ends"), OPERATION_TIMEOUT, || {
        let (ops, path) = (ops.clone(), path.clone());
        async move {
            let r = ops.get(&path).await;
            match (r.status, r.body["state"].as_str()) {
                (200, Some("running")) => Err(format!("running: {}", r.body["progress"])),
                (200, Some(_)) => Ok(r.body),
                _ => Err(format!("HTTP {}: {}", r.status, r.text)),
            }
        }
    })
    .await
}

/// Posts `body` to `path`, expects an operation of `kind` to be accepted and to succeed;
/// returns the operation as it ended (`result` is what the request answered before
/// operations).
pub async fn run_operation(ops: &Client, path: &str, body: &Value, kind: &str) -> Value {
    let r = ops.post(path, body).await;
    let id = accepted(&r, kind, path);
    let op = finished(ops, &id).await;
    assert_eq!(op["state"], "succeeded", "{path}: {op}");
    op
}
