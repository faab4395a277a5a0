//! The seams through which logic reads time and randomness and runs blocking work. Every
//! crate of Agora sits above this one; production implementations are in `system`,
//! simulated ones in `agora-sim`.

pub mod planted;
pub mod system;

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// Told each time a node lets a shard's entities run, with the term (a replicated shard's
/// group term) or epoch (an unreplicated shard's owner epoch) it serves under: the
/// simulator's one-owner and one-leader checkers read it as the run goes.
pub trait ServedLog: Send + Sync + 'static {
    /// `node` served `shard` under `term` just now.
    fn served(&self, node: u64, shard: u32, term: u64);
}

/// A source of random bytes.
pub trait RandomSource: Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A random u64.
    fn next_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// A random (version 4) UUID, as a string.
    fn uuid(&self) -> String {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}

/// Where work that blocks (password hashing, Raft's redb reads and writes) runs: tokio's
/// blocking pool in production, inline in the simulator.
pub trait BlockingPool: Send + Sync + 'static {
    /// Runs `job` somewhere it may block.
    fn run(&self, job: Box<dyn FnOnce() + Send>);
}

/// The blocking pool dropped a job before it ran (the runtime is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDropped;

/// Runs `f` on `pool` and awaits its result.
pub async fn run_blocking<T: Send + 'static>(
    pool: &std::sync::Arc<dyn BlockingPool>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobDropped> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.run(Box::new(move || {
        let _ = tx.send(f());
    }));
    rx.await.map_err(|_| JobDropped)
}
