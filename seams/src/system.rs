//! Production implementations of the seams: the system clock, the OS random source and
//! tokio's blocking pool.

use crate::{BlockingPool, Clock, RandomSource};

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // getrandom only fails when the OS has no entropy source at all; a node cannot run
        // safely then, so this is a fatal invariant, not an input-reachable path.
        if let Err(e) = getrandom::fill(buf) {
            panic!("the operating system's random source failed: {e}");
        }
    }
}

/// Tokio's blocking pool.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioBlocking;

impl BlockingPool for TokioBlocking {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        tokio::task::spawn_blocking(job);
    }
}
