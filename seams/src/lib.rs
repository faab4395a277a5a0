//! The seams through which logic reads time and randomness and runs blocking work. Every
//! crate of Agora sits above this one; production implementations are in `system`,
//! simulated ones in `agora-sim`.

pub mod system;

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
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
