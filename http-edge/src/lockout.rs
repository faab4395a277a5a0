//! Login lockout per (account, client address), with growing delays. A global lock per
//! account let a stranger lock the owner out with five wrong passwords, and showed which
//! emails had accounts (only real ones were ever locked). Here the failures of one address
//! against one email lock only that pair, whether or not the email has an account, so the
//! owner elsewhere keeps logging in and a lock tells nothing about the email.
//!
//! The counts live in this node's memory (bounded; the oldest pairs go first), timed by the
//! `Clock` seam. Each node of a cluster counts on its own: an attacker spreading attempts
//! over N nodes gets N times the attempts, still bounded by the per-address login rate limit.

use agora_actors::seams::Clock;
use agora_actors::session::LockoutPolicy;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Most (account, address) pairs remembered; beyond it the least recently failed go first.
pub const MAX_PAIRS: usize = 100_000;

/// The failures of one address against one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Failures {
    /// Failed logins in a row.
    count: u32,
    /// No login is checked before this time (ms since epoch).
    locked_until_ms: u64,
    /// When the last failure was (ms since epoch).
    last_ms: u64,
}

/// Who is logging in: the account (by user id) and the client's address (if known).
pub type Pair = (String, Option<IpAddr>);

/// The lockout table.
pub struct Lockouts {
    pairs: Mutex<HashMap<Pair, Failures>>,
    policy: LockoutPolicy,
    clock: Arc<dyn Clock>,
}

impl Lockouts {
    /// An empty table with `policy`, timed by `clock`.
    pub fn new(policy: LockoutPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            pairs: Mutex::new(HashMap::new()),
            policy,
            clock,
        }
    }

    /// The table, also after a panic elsewhere while it was held (each change is one
    /// whole-value insert or removal, never left half-done).
    fn pairs(&self) -> MutexGuard<'_, HashMap<Pair, Failures>> {
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Milliseconds until `pair` may try again, if it is locked now.
    pub fn locked_for(&self, pair: &Pair) -> Option<u64> {
        let now_ms = self.clock.now_ms();
        let until_ms = self.pairs().get(pair)?.locked_until_ms;
        (until_ms > now_ms).then(|| until_ms - now_ms)
    }

    /// Records a failed login of `pair`; answers the lock it caused (ms), if any.
    pub fn failed(&self, pair: Pair) -> Option<u64> {
        let now_ms = self.clock.now_ms();
        let mut pairs = self.pairs();
        if pairs.len() >= MAX_PAIRS && !pairs.contains_key(&pair) {
            evict(&mut pairs, now_ms);
        }
        let mut f = pairs.get(&pair).copied().unwrap_or_default();
        if f.locked_until_ms > now_ms {
            return Some(f.locked_until_ms - now_ms);
        }
        f.count = f.count.saturating_add(1);
        f.last_ms = now_ms;
        let lock_ms = self.policy.lock_ms(f.count);
        f.locked_until_ms = now_ms.saturating_add(lock_ms);
        pairs.insert(pair, f);
        debug_assert!(pairs.len() <= MAX_PAIRS);
        (lock_ms > 0).then_some(lock_ms)
    }

    /// Records a successful login of `pair`: its failures are forgotten.
    pub fn succeeded(&self, pair: &Pair) {
        self.pairs().remove(pair);
    }
}

/// Makes room for one pair: drops the unlocked pairs, and if none is, the one that failed
/// longest ago.
fn evict(pairs: &mut HashMap<Pair, Failures>, now_ms: u64) {
    pairs.retain(|_, f| f.locked_until_ms > now_ms);
    if pairs.len() >= MAX_PAIRS {
        let oldest = pairs
            .iter()
            .min_by_key(|(_, f)| f.last_ms)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            pairs.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::testing::TestClock;

    fn table() -> (Arc<TestClock>, Lockouts) {
        let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
        let policy = LockoutPolicy {
            threshold: 5,
            base_ms: 1_000,
            max_ms: 60_000,
        };
        (clock.clone(), Lockouts::new(policy, clock))
    }

    fn pair(user: &str, ip: &str) -> Pair {
        (user.to_string(), ip.parse().ok())
    }

    #[test]
    fn a_stranger_locks_only_their_own_address_out_of_an_account() {
        let (_, t) = table();
        let stranger = pair("victim", "203.0.113.9");
        for _ in 0..4 {
            assert_eq!(t.failed(stranger.clone()), None);
        }
        assert_eq!(t.failed(stranger.clone()), Some(1_000));
        assert_eq!(t.locked_for(&stranger), Some(1_000));
        // The owner, from their own address, is not locked.
        assert_eq!(t.locked_for(&pair("victim", "198.51.100.1")), None);
        // Nor is another account from the stranger's address.
        assert_eq!(t.locked_for(&pair("other", "203.0.113.9")), None);
    }

    #[test]
    fn locks_grow_with_each_further_failure_and_a_success_forgets() {
        let (clock, t) = table();
        let p = pair("u", "192.0.2.1");
        for _ in 0..5 {
            t.failed(p.clone());
        }
        // A failure while locked is not counted (the password was not checked).
        assert_eq!(t.failed(p.clone()), Some(1_000));
        clock.0.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(t.locked_for(&p), None);
        assert_eq!(t.failed(p.clone()), Some(2_000));
        clock.0.fetch_add(2_000, Ordering::SeqCst);
        assert_eq!(t.failed(p.clone()), Some(4_000));
        t.succeeded(&p);
        assert_eq!(t.locked_for(&p), None);
        assert_eq!(t.failed(p), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let (_, t) = table();
        for i in 0..(MAX_PAIRS + 10) {
            t.failed((format!("u{i}"), None));
        }
        assert!(t.pairs().len() <= MAX_PAIRS);
    }
}
