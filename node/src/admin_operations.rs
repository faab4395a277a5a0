//! Long admin operations (drain, move, remove) run in the background: the request that
//! starts one answers `202 Accepted` with the operation, and `GET /admin/operations/{id}`
//! follows it to its end. Operations live in memory on the node that accepted them: they
//! do not survive its restart. The registry keeps the newest finished ones (a bounded
//! number) and refuses a new operation while too many run.

use crate::admin::AdminState;
use crate::admin_dto::{OperationDto, OperationKind, OperationResult, OperationState};
use crate::admin_dto::{OperationProblemDto, OperationsDto, ProgressDto, ProgressUnit};
use agora_actors::seams::Clock;
use agora_http_edge::dto::rfc3339;
use agora_http_edge::problem::Problem;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Finished operations kept (the oldest are forgotten first).
pub const KEEP_FINISHED: usize = 100;
/// Operations that may run at once on a node; one more is refused (429).
pub const MAX_RUNNING: usize = 16;

/// What an operation acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The node drained or removed.
    pub node: Option<u64>,
    /// The shard moved.
    pub shard: Option<u32>,
    /// Where the shard (or its lead) moves.
    pub to: Option<u64>,
}

/// One operation as the registry holds it.
#[derive(Debug, Clone)]
struct Operation {
    id: String,
    kind: OperationKind,
    target: Target,
    state: OperationState,
    done: usize,
    total: usize,
    unit: ProgressUnit,
    started_at_ms: u64,
    finished_at_ms: Option<u64>,
    result: Option<OperationResult>,
    problem: Option<OperationProblemDto>,
}

impl Operation {
    fn dto(&self) -> OperationDto {
        OperationDto {
            finished_at: self.finished_at_ms.map(rfc3339),
            id: self.id.clone(),
            kind: self.kind,
            node: self.target.node,
            problem: self.problem.clone(),
            progress: ProgressDto {
                done: self.done,
                total: self.total,
                unit: self.unit,
            },
            result: self.result.clone(),
            shard: self.target.shard,
            started_at: rfc3339(self.started_at_ms),
            state: self.state,
            to: self.target.to,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Operations started so far (for ids).
    started: u64,
    /// Newest last.
    operations: VecDeque<Operation>,
}

/// The operations of this node.
pub struct Operations {
    me: u64,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

/// What `Operations::start` did.
pub enum Started {
    /// A new operation: run it with `Operations::run`.
    New(OperationHandle),
    /// The same operation was running already (a second drain of the node).
    Running(OperationDto),
}

/// Reports on one running operation.
#[derive(Clone)]
pub struct OperationHandle {
    operations: Arc<Operations>,
    id: String,
}

impl Operations {
    /// No operations yet, on node `me`, timed by `clock`.
    pub fn new(me: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            me,
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, Problem> {
        self.inner
            .lock()
            .map_err(|_| Problem::internal("the operations lock is poisoned"))
    }

    /// Registers a running operation of `total` `unit`s, unless the same drain runs already
    /// (then that one is returned) or too many run (429).
    pub fn start(
        self: &Arc<Self>,
        kind: OperationKind,
        target: Target,
        (total, unit): (usize, ProgressUnit),
    ) -> Result<Started, Problem> {
        let now_ms = self.clock.now_ms();
        let mut inner = self.lock()?;
        let running = inner
            .operations
            .iter()
            .filter(|o| o.state == OperationState::Running);
        if let Some(same) = running.clone().find(|o| {
            kind == OperationKind::Drain && o.kind == kind && o.target.node == target.node
        }) {
            return Ok(Started::Running(same.dto()));
        }
        if running.count() >= MAX_RUNNING {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-operations",
                "Too many operations",
                format!("{MAX_RUNNING} operations are running on this node: wait for one to end"),
            ));
        }
        inner.started += 1;
        let id = format!("{}-{now_ms:x}-{}", self.me, inner.started);
        inner.operations.push_back(Operation {
            id: id.clone(),
            kind,
            target,
            state: OperationState::Running,
            done: 0,
            total,
            unit,
            started_at_ms: now_ms,
            finished_at_ms: None,
            result: None,
            problem: None,
        });
        tracing::info!(operation = %id, ?kind, ?target, total, "operation started");
        Ok(Started::New(OperationHandle {
            operations: self.clone(),
            id,
        }))
    }

    /// Operation `id`, if this node has it.
    pub fn get(&self, id: &str) -> Option<OperationDto> {
        let inner = self.inner.lock().ok()?;
        inner
            .operations
            .iter()
            .find(|o| o.id == id)
            .map(Operation::dto)
    }

    /// Every operation kept, newest first.
    pub fn list(&self) -> Vec<OperationDto> {
        self.inner
            .lock()
            .map(|inner| inner.operations.iter().rev().map(Operation::dto).collect())
            .unwrap_or_default()
    }

    /// Runs `work` for the operation `handle` in the background: its result ends the
    /// operation, and so does a panic (as failed).
    pub fn run<F>(handle: OperationHandle, work: F)
    where
        F: Future<Output = Result<OperationResult, Problem>> + Send + 'static,
    {
        let task = tokio::spawn(work);
        tokio::spawn(async move {
            let ended = match task.await {
                Ok(ended) => ended,
                Err(e) => Err(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "operation-panicked",
                    "Operation panicked",
                    format!("the operation's task ended without a result (it panicked): {e}"),
                )),
            };
            handle.finish(ended);
        });
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Operation)) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(op) = inner.operations.iter_mut().find(|o| o.id == id) {
            change(op);
        }
    }

    /// Forgets the oldest finished operations beyond `KEEP_FINISHED`.
    fn trim(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let finished = |o: &Operation| o.state != OperationState::Running;
        let mut excess = inner
            .operations
            .iter()
            .filter(|o| finished(o))
            .count()
            .saturating_sub(KEEP_FINISHED);
        inner.operations.retain(|o| {
            let forget = excess > 0 && finished(o);
            excess -= usize::from(forget);
            !forget
        });
    }
}

impl OperationHandle {
    /// The operation's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The operation as it stands.
    pub fn dto(&self) -> Option<OperationDto> {
        self.operations.get(&self.id)
    }

    /// Reports `done` of `total` units done.
    pub fn progress(&self, done: usize, total: usize) {
        tracing::info!(operation = %self.id, done, of = total, "operation progress");
        self.operations.update(&self.id, |op| {
            op.done = done;
            op.total = total;
        });
    }

    /// Ends the operation: succeeded with its result, or failed with a problem.
    pub fn finish(&self, ended: Result<OperationResult, Problem>) {
        let now_ms = self.operations.clock.now_ms();
        match &ended {
            Ok(_) => tracing::info!(operation = %self.id, "operation succeeded"),
            Err(p) => tracing::warn!(operation = %self.id, problem = %p.detail, "operation failed"),
        }
        self.operations.update(&self.id, |op| {
            // The work ended: whatever it did not report is done (a success) or not (failure).
            op.finished_at_ms = Some(now_ms);
            match ended {
                Ok(result) => {
                    op.state = OperationState::Succeeded;
                    op.done = op.total;
                    op.result = Some(result);
                }
                Err(p) => {
                    op.state = OperationState::Failed;
                    op.problem = Some(OperationProblemDto {
                        kind: format!("/problems/{}", p.slug),
                        title: p.title.to_string(),
                        status: p.status.as_u16(),
                        detail: p.detail,
                    });
                }
            }
        });
        self.operations.trim();
    }
}

/// The `202 Accepted` answer for an operation: `Location: /admin/operations/{id}`, and the
/// operation as the body.
pub fn accepted(op: OperationDto) -> Response {
    let location = format!("/admin/operations/{}", op.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(op),
    )
        .into_response()
}

/// Starts an operation and runs `work(handle)` for it, or returns the same drain already
/// running; answers 202 either way.
pub fn launch<W, F>(
    operations: &Arc<Operations>,
    (kind, target): (OperationKind, Target),
    total: (usize, ProgressUnit),
    work: W,
) -> Result<Response, Problem>
where
    W: FnOnce(OperationHandle) -> F,
    F: Future<Output = Result<OperationResult, Problem>> + Send + 'static,
{
    match operations.start(kind, target, total)? {
        Started::Running(op) => Ok(accepted(op)),
        Started::New(handle) => {
            let dto = handle
                .dto()
                .ok_or_else(|| Problem::internal("the operation vanished"))?;
            Operations::run(handle.clone(), work(handle));
            Ok(accepted(dto))
        }
    }
}

/// `GET /admin/operations`: this node's operations, newest first (running ones and the
/// newest finished).
#[utoipa::path(get, path = "/admin/operations", operation_id = "list_operations", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = OperationsDto, description = "the operations this node accepted since it started, newest first")))]
pub async fn list_operations(State(s): State<Arc<AdminState>>) -> Json<OperationsDto> {
    Json(OperationsDto {
        items: s.operations.list(),
    })
}

/// `GET /admin/operations/{id}`: one operation, as the node that accepted it knows it.
#[utoipa::path(get, path = "/admin/operations/{id}", operation_id = "get_operation", tag = "operations", security(("bearer" = [])),
    params(("id" = String, Path, description = "the operation's id (the `Location` its request answered)")),
    responses((status = 200, body = OperationDto, description = "the operation"),
              (status = 404, description = "no such operation on this node (never, forgotten, or the node restarted since)")))]
pub async fn get_operation(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<OperationDto>, Problem> {
    s.operations
        .get(&id)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no operation {id:?} on this node")))
}

#[cfg(test)]
mod tests;
