//! The operation registry: state transitions, the bound on finished operations, the limit
//! on running ones, and a second drain of a node returning the running one.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// A clock the test moves by hand.
struct HandClock(AtomicU64);

impl Clock for HandClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const T0_MS: u64 = 1_780_000_000_000;

fn registry() -> (Arc<Operations>, Arc<HandClock>) {
    let clock = Arc::new(HandClock(AtomicU64::new(T0_MS)));
    (Arc::new(Operations::new(2, clock.clone())), clock)
}

fn drain_of(node: u64) -> (OperationKind, Target) {
    let target = Target {
        node: Some(node),
        shard: None,
        to: None,
    };
    (OperationKind::Drain, target)
}

fn move_of(shard: u32) -> (OperationKind, Target) {
    let target = Target {
        node: None,
        shard: Some(shard),
        to: Some(3),
    };
    (OperationKind::Move, target)
}

fn start(ops: &Arc<Operations>, (kind, target): (OperationKind, Target)) -> OperationHandle {
    match ops.start(kind, target, (4, ProgressUnit::Shards)) {
        Ok(Started::New(handle)) => handle,
        Ok(Started::Running(op)) => panic!("{op:?} was running already"),
        Err(p) => panic!("refused: {}", p.detail),
    }
}

fn drained(moved: usize) -> OperationResult {
    OperationResult::Drained(crate::admin_dto::DrainedDto {
        moved_shards: moved,
        node: 2,
        status: "drained".into(),
    })
}

#[test]
fn an_operation_runs_reports_progress_and_succeeds_with_its_result() {
    let (ops, clock) = registry();
    let op = start(&ops, drain_of(2));
    let seen = ops.get(op.id()).expect("registered");
    assert_eq!(seen.state, OperationState::Running);
    assert_eq!((seen.progress.done, seen.progress.total), (0, 4));
    assert_eq!(seen.started_at, "2026-05-28T20:26:40.000Z");
    assert!(seen.finished_at.is_none() && seen.result.is_none());
    op.progress(3, 4);
    assert_eq!(ops.get(op.id()).map(|o| o.progress.done), Some(3));
    clock.0.store(T0_MS + 1_500, Ordering::SeqCst);
    op.finish(Ok(drained(4)));
    let done = ops.get(op.id()).expect("kept");
    assert_eq!(done.state, OperationState::Succeeded);
    assert_eq!((done.progress.done, done.progress.total), (4, 4));
    assert_eq!(
        done.finished_at.as_deref(),
        Some("2026-05-28T20:26:41.500Z")
    );
    assert!(matches!(done.result, Some(OperationResult::Drained(_))));
    assert!(done.problem.is_none());
}

#[test]
fn a_failed_operation_keeps_its_progress_and_says_why() {
    let (ops, _) = registry();
    let op = start(&ops, move_of(5));
    op.progress(1, 4);
    op.finish(Err(Problem::unavailable("node 3 is not connected")));
    let failed = ops.get(op.id()).expect("kept");
    assert_eq!(failed.state, OperationState::Failed);
    assert_eq!(failed.progress.done, 1);
    let problem = failed.problem.expect("a problem");
    assert_eq!(
        (problem.status, problem.detail.as_str()),
        (503, "node 3 is not connected")
    );
    assert!(failed.result.is_none() && failed.finished_at.is_some());
}

#[test]
fn a_second_drain_of_a_node_returns_the_running_one_and_a_finished_one_does_not() {
    let (ops, _) = registry();
    let first = start(&ops, drain_of(2));
    let (kind, target) = drain_of(2);
    match ops.start(kind, target, (4, ProgressUnit::Shards)) {
        Ok(Started::Running(op)) => assert_eq!(op.id, first.id()),
        _ => panic!("a second drain started while the first runs"),
    }
    // Moves are not merged: two of them are two operations.
    let a = start(&ops, move_of(1));
    let b = start(&ops, move_of(1));
    assert_ne!(a.id(), b.id());
    first.finish(Ok(drained(4)));
    let again = start(&ops, drain_of(2));
    assert_ne!(again.id(), first.id());
    assert_eq!(ops.list().len(), 4);
}

#[test]
fn finished_operations_are_bounded_and_listed_newest_first() {
    let (ops, _) = registry();
    let running = start(&ops, drain_of(2));
    let mut ids = Vec::new();
    for shard in 0..(KEEP_FINISHED as u32 + 5) {
        let op = start(&ops, move_of(shard));
        op.finish(Ok(drained(0)));
        ids.push(op.id().to_string());
    }
    let listed = ops.list();
    assert_eq!(
        listed.len(),
        KEEP_FINISHED + 1,
        "the running one and the newest finished"
    );
    assert_eq!(listed[0].id, ids[ids.len() - 1], "newest first");
    assert!(
        ops.get(&ids[4]).is_none(),
        "the oldest finished are forgotten"
    );
    assert!(ops.get(&ids[5]).is_some());
    assert!(
        ops.get(running.id()).is_some(),
        "a running one is never forgotten"
    );
}

#[test]
fn too_many_running_operations_refuse_another_with_429() {
    let (ops, _) = registry();
    let handles: Vec<_> = (0..MAX_RUNNING as u32)
        .map(|s| start(&ops, move_of(s)))
        .collect();
    let (kind, target) = move_of(99);
    match ops.start(kind, target, (1, ProgressUnit::Shards)) {
        Err(p) => assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS),
        Ok(_) => panic!("one more than {MAX_RUNNING} started"),
    }
    handles[0].finish(Ok(drained(0)));
    let (kind, target) = move_of(99);
    assert!(ops.start(kind, target, (1, ProgressUnit::Shards)).is_ok());
}

#[tokio::test]
async fn a_panicking_operation_ends_failed() {
    let (ops, _) = registry();
    let op = start(&ops, drain_of(2));
    let id = op.id().to_string();
    Operations::run(op, async { panic!("the work panicked") });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let ended = loop {
        match ops.get(&id) {
            Some(o) if o.state != OperationState::Running => break o,
            _ if tokio::time::Instant::now() > deadline => panic!("still running"),
            _ => tokio::task::yield_now().await,
        }
    };
    assert_eq!(ended.state, OperationState::Failed);
    let detail = ended.problem.map(|p| p.detail).unwrap_or_default();
    assert!(detail.contains("panicked"), "{detail}");
}
