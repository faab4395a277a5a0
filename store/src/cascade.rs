//! Early deliveries whose receivers have not yet handed over their own change. A saga hop
//! delivered early (before its sender's commit) usually produces a change within tens of
//! microseconds, so the writer, before it starts a commit, waits briefly for the hops in
//! flight to land: the whole cascade of an order (placed, stock reserved, order settled,
//! payment started) then shares one fsync instead of one each, and a reply that waits for
//! the last of them waits for one commit.
//!
//! Each early message carries a [`CascadeHold`]; the count drops when the hold is dropped:
//! after the receiver submitted its change, or wherever the delivery is given up (a
//! receiver on another node, a busy lane, a dropped message), so a lost hold cannot leak.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The number of early deliveries in flight, and a way to wait for none.
#[derive(Debug, Default)]
pub struct Cascade {
    state: Mutex<CascadeState>,
    settled: Condvar,
    /// Wakes async waiters (the simulator's writer) when the count reaches zero.
    settled_async: tokio::sync::Notify,
    /// The longest wait before a commit, in µs (0: none).
    gather_us: AtomicU64,
}

#[derive(Debug, Default)]
struct CascadeState {
    in_flight: usize,
    waiters: usize,
}

/// One early delivery in flight; dropping it says its receiver is done with it.
#[derive(Debug)]
pub struct CascadeHold(Arc<Cascade>);

impl Drop for CascadeHold {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 && s.waiters > 0 {
            self.0.settled.notify_all();
        }
        if s.in_flight == 0 {
            self.0.settled_async.notify_waiters();
        }
    }
}

impl Cascade {
    fn lock(&self) -> std::sync::MutexGuard<'_, CascadeState> {
        // The state is two counters: a panic elsewhere cannot leave them half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more early delivery in flight until the returned hold is dropped.
    pub fn hold(self: &Arc<Self>) -> CascadeHold {
        self.lock().in_flight += 1;
        CascadeHold(self.clone())
    }

    /// The longest a commit waits for deliveries in flight (`None`: it does not wait).
    pub fn gather(&self) -> Option<Duration> {
        let us = self.gather_us.load(Ordering::Relaxed);
        (us > 0).then(|| Duration::from_micros(us))
    }

    /// Sets the longest wait (`None`: commits do not wait).
    pub fn set_gather(&self, gather: Option<Duration>) {
        let us = gather.map_or(0, |g| u64::try_from(g.as_micros()).unwrap_or(u64::MAX));
        self.gather_us.store(us, Ordering::Relaxed);
    }

    /// Early deliveries in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Threads waiting in [`Cascade::wait_settled`] now.
    pub fn waiters(&self) -> usize {
        self.lock().waiters
    }

    /// Waits until no early delivery is in flight (true) or `deadline` passes (false),
    /// without blocking the thread: the writer of the simulator, on virtual time.
    pub async fn settled(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let woken = self.settled_async.notified();
            let mut woken = std::pin::pin!(woken);
            // Registered before the count is read, so a drop to zero in between wakes it.
            woken.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Blocks until no early delivery is in flight (true) or `deadline` passes (false).
    pub fn wait_settled(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        s.waiters += 1;
        let settled = loop {
            if s.in_flight == 0 {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            s = match self.settled.wait_timeout(s, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        };
        s.waiters -= 1;
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_waiter_is_released_when_the_last_hold_drops() {
        let cascade = Arc::new(Cascade::default());
        let first = cascade.hold();
        let second = cascade.hold();
        assert_eq!(cascade.in_flight(), 2);
        let waiting = {
            let cascade = cascade.clone();
            std::thread::spawn(move || {
                cascade.wait_settled(Instant::now() + Duration::from_secs(60))
            })
        };
        while cascade.waiters() == 0 {
            std::thread::yield_now();
        }
        drop(first);
        assert_eq!(cascade.waiters(), 1, "one hold is still in flight");
        drop(second);
        assert!(waiting.join().unwrap(), "settled, not timed out");
        assert_eq!(cascade.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_async_waiter_is_woken_by_the_last_hold_and_gives_up_at_its_deadline() {
        let cascade = Arc::new(Cascade::default());
        let hold = cascade.hold();
        let start = tokio::time::Instant::now();
        let gather = Duration::from_micros(500);
        assert!(!cascade.settled(start + gather).await, "a hold in flight");
        // Waited its whole gather, in virtual time (tokio's timers tick in milliseconds).
        assert!(start.elapsed() >= gather && start.elapsed() <= Duration::from_millis(1));
        let waiting = {
            let cascade = cascade.clone();
            tokio::spawn(async move { cascade.settled(start + Duration::from_secs(60)).await })
        };
        tokio::task::yield_now().await;
        drop(hold);
        assert!(waiting.await.unwrap(), "settled, not timed out");
        assert!(start.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline() {
        let cascade = Arc::new(Cascade::default());
        let _hold = cascade.hold();
        assert!(!cascade.wait_settled(Instant::now() + Duration::from_micros(200)));
        assert_eq!(cascade.waiters(), 0);
        drop(_hold);
        assert!(cascade.wait_settled(Instant::now()));
    }
}
