//! An account's sign-in security: consecutive failed logins with a growing lockout, and the
//! account's refresh tokens (only their SHA-256 hashes are stored), rotated on use and
//! revocable. Pure logic on `Security`; the account entity calls it with the `Ctx` clock.

use serde::{Deserialize, Serialize};

/// Failed logins in a row before the first lockout.
pub const LOCKOUT_THRESHOLD: u32 = 5;
/// Most live refresh tokens per account (the oldest is dropped beyond it).
pub const MAX_REFRESH_TOKENS: usize = 10;
/// Rotated token hashes remembered per account, to recognise the reuse of a stolen one.
pub const MAX_ROTATED_REMEMBERED: usize = 20;
/// Length of a stored token hash: SHA-256 as lower-case hex.
pub const TOKEN_HASH_LEN: usize = 64;

/// Lockout timings (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Lock after this many failures in a row.
    pub threshold: u32,
    /// Length of the first lock; each further failure doubles it.
    pub base_ms: u64,
    /// Longest lock.
    pub max_ms: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: LOCKOUT_THRESHOLD,
            base_ms: 60_000,
            max_ms: 60 * 60_000,
        }
    }
}

impl LockoutPolicy {
    /// The lock that follows the `failures`-th failure in a row (0: none).
    pub fn lock_ms(&self, failures: u32) -> u64 {
        if failures < self.threshold.max(1) {
            return 0;
        }
        let doublings = (failures - self.threshold.max(1)).min(40);
        self.base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
    }
}

/// One live refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshToken {
    /// SHA-256 of the token, lower-case hex.
    pub hash: String,
    /// When it was issued (ms since epoch).
    pub issued_at_ms: u64,
    /// When it stops being accepted (ms since epoch).
    pub expires_at_ms: u64,
}

/// Sign-in security of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Failed logins since the last success.
    pub failed_logins: u32,
    /// No login is checked before this time (ms since epoch; 0: not locked).
    pub locked_until_ms: u64,
    /// Live refresh tokens, oldest first, at most `MAX_REFRESH_TOKENS`.
    pub refresh_tokens: Vec<RefreshToken>,
    /// Hashes of tokens already rotated, newest last, at most `MAX_ROTATED_REMEMBERED`.
    pub rotated: Vec<String>,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of this account (never issued, revoked, or dropped over the cap).
    Unknown,
    /// Past its expiry.
    Expired,
    /// Already rotated: someone replays an old token, so every session was revoked.
    Reused,
}

/// Whether `h` looks like a stored token hash.
pub fn valid_hash(h: &str) -> bool {
    h.len() == TOKEN_HASH_LEN && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Security {
    /// Milliseconds until a login may be tried again, if locked at `now_ms`.
    pub fn locked_for(&self, now_ms: u64) -> Option<u64> {
        (self.locked_until_ms > now_ms).then(|| self.locked_until_ms - now_ms)
    }

    /// Records a failed login at `now_ms`; answers the lock it caused, if any (ms). A failure
    /// while locked is not counted (the password was not checked).
    pub fn login_failed(&mut self, now_ms: u64, policy: &LockoutPolicy) -> Option<u64> {
        if self.locked_for(now_ms).is_some() {
            return self.locked_for(now_ms);
        }
        self.failed_logins = self.failed_logins.saturating_add(1);
        let lock = policy.lock_ms(self.failed_logins);
        if lock == 0 {
            return None;
        }
        self.locked_until_ms = now_ms.saturating_add(lock);
        Some(lock)
    }

    /// Records a successful login: the failures are forgotten and `token` becomes live (the
    /// oldest live token is dropped beyond the cap).
    pub fn login_succeeded(&mut self, token: RefreshToken, now_ms: u64) {
        self.failed_logins = 0;
        self.locked_until_ms = 0;
        self.add(token, now_ms);
    }

    fn prune(&mut self, now_ms: u64) {
        self.refresh_tokens.retain(|t| t.expires_at_ms > now_ms);
    }

    fn add(&mut self, token: RefreshToken, now_ms: u64) {
        self.prune(now_ms);
        self.refresh_tokens.retain(|t| t.hash != token.hash);
        self.refresh_tokens.push(token);
        if self.refresh_tokens.len() > MAX_REFRESH_TOKENS {
            let excess = self.refresh_tokens.len() - MAX_REFRESH_TOKENS;
            self.refresh_tokens.drain(..excess);
        }
    }

    fn remember_rotated(&mut self, hash: String) {
        self.rotated.retain(|h| *h != hash);
        self.rotated.push(hash);
        if self.rotated.len() > MAX_ROTATED_REMEMBERED {
            let excess = self.rotated.len() - MAX_ROTATED_REMEMBERED;
            self.rotated.drain(..excess);
        }
    }

    /// Exchanges the live token `old_hash` for `new`. A token already rotated is a replay:
    /// every live token is revoked (the thief and the owner both sign in again).
    pub fn rotate(
        &mut self,
        old_hash: &str,
        new: RefreshToken,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if self.rotated.iter().any(|h| h == old_hash) {
            self.refresh_tokens.clear();
            return Err(Refusal::Reused);
        }
        let Some(pos) = self.refresh_tokens.iter().position(|t| t.hash == old_hash) else {
            return Err(Refusal::Unknown);
        };
        if self.refresh_tokens[pos].expires_at_ms <= now_ms {
            self.refresh_tokens.remove(pos);
            return Err(Refusal::Expired);
        }
        self.refresh_tokens.remove(pos);
        self.remember_rotated(old_hash.to_string());
        self.add(new, now_ms);
        Ok(())
    }

    /// Revokes the token `hash` (no effect if it is not live); answers whether it was.
    pub fn revoke(&mut self, hash: &str) -> bool {
        let before = self.refresh_tokens.len();
        self.refresh_tokens.retain(|t| t.hash != hash);
        before != self.refresh_tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tok(n: u64, now: u64, ttl: u64) -> RefreshToken {
        RefreshToken {
            hash: format!("{n:064x}"),
            issued_at_ms: now,
            expires_at_ms: now + ttl,
        }
    }

    #[test]
    fn lockout_starts_at_the_threshold_doubles_and_is_capped() {
        let p = LockoutPolicy::default();
        assert_eq!(p.lock_ms(4), 0);
        assert_eq!(p.lock_ms(5), 60_000);
        assert_eq!(p.lock_ms(6), 120_000);
        assert_eq!(p.lock_ms(7), 240_000);
        assert_eq!(p.lock_ms(100), 3_600_000);
        assert_eq!(p.lock_ms(u32::MAX), 3_600_000);
    }

    #[test]
    fn five_failures_lock_and_a_success_after_the_lock_resets() {
        let p = LockoutPolicy::default();
        let mut s = Security::default();
        for i in 0..4 {
            assert_eq!(s.login_failed(i, &p), None);
        }
        assert_eq!(s.login_failed(10, &p), Some(60_000));
        assert_eq!(s.locked_for(10), Some(60_000));
        // Attempts while locked are not counted.
        assert_eq!(s.login_failed(20, &p), Some(59_990));
        assert_eq!(s.failed_logins, 5);
        assert_eq!(s.locked_for(60_010), None);
        // The next failure after the lock doubles it.
        assert_eq!(s.login_failed(60_010, &p), Some(120_000));
        s.login_succeeded(tok(1, 200_000, 1000), 200_000);
        assert_eq!((s.failed_logins, s.locked_until_ms), (0, 0));
        assert_eq!(s.login_failed(200_001, &p), None);
    }

    #[test]
    fn rotation_revocation_expiry_and_reuse() {
        let mut s = Security::default();
        s.login_succeeded(tok(1, 0, 1000), 0);
        assert_eq!(s.rotate(&tok(1, 0, 0).hash, tok(2, 10, 1000), 10), Ok(()));
        // The rotated token is refused, and its reuse revokes every session.
        assert_eq!(
            s.rotate(&tok(1, 0, 0).hash, tok(3, 20, 1000), 20),
            Err(Refusal::Reused)
        );
        assert!(s.refresh_tokens.is_empty());
        s.login_succeeded(tok(4, 30, 100), 30);
        assert_eq!(
            s.rotate(&tok(4, 0, 0).hash, tok(5, 130, 100), 130),
            Err(Refusal::Expired)
        );
        s.login_succeeded(tok(6, 200, 100), 200);
        assert!(s.revoke(&tok(6, 0, 0).hash));
        assert!(!s.revoke(&tok(6, 0, 0).hash));
        assert_eq!(
            s.rotate(&tok(6, 0, 0).hash, tok(7, 210, 100), 210),
            Err(Refusal::Unknown)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Fail,
        Succeed(u64),
        Rotate(u64, u64),
        Revoke(u64),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Fail),
            (0u64..30).prop_map(Op::Succeed),
            (0u64..30, 0u64..30).prop_map(|(a, b)| Op::Rotate(a, b)),
            (0u64..30).prop_map(Op::Revoke),
            (0u64..200_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Against a model: the lock follows the failure count, tokens are capped, a token
        /// is accepted at most once, and expired or revoked tokens are never accepted.
        #[test]
        fn the_security_state_machine_keeps_its_invariants(ops in prop::collection::vec(op(), 0..120)) {
            let p = LockoutPolicy { threshold: 5, base_ms: 1_000, max_ms: 16_000 };
            let mut s = Security::default();
            let mut now = 1u64;
            let mut accepted: std::collections::BTreeSet<String> = Default::default();
            let mut revoked: std::collections::BTreeSet<String> = Default::default();
            let mut n = 1000u64;
            for op in ops {
                let before = s.clone();
                match op {
                    Op::Fail => {
                        let locked_before = before.locked_for(now).is_some();
                        let r = s.login_failed(now, &p);
                        if locked_before {
                            prop_assert_eq!(s.failed_logins, before.failed_logins);
                        } else {
                            prop_assert_eq!(s.failed_logins, before.failed_logins + 1);
                            prop_assert_eq!(r.unwrap_or(0), p.lock_ms(s.failed_logins));
                        }
                        prop_assert!(s.locked_for(now).unwrap_or(0) <= p.max_ms);
                    }
                    Op::Succeed(h) => {
                        n += 1;
                        s.login_succeeded(tok(h * 1_000_000 + n, now, 50_000), now);
                        prop_assert_eq!(s.failed_logins, 0);
                    }
                    Op::Rotate(i, h) => {
                        let old = s.refresh_tokens.get(i as usize % (s.refresh_tokens.len() + 1)).map(|t| t.hash.clone())
                            .or_else(|| s.rotated.first().cloned())
                            .unwrap_or_else(|| format!("{:064x}", i));
                        n += 1;
                        let new = tok(h * 1_000_000 + n, now, 50_000);
                        let live = before.refresh_tokens.iter().any(|t| t.hash == old && t.expires_at_ms > now);
                        match s.rotate(&old, new.clone(), now) {
                            Ok(()) => {
                                prop_assert!(live);
                                prop_assert!(!revoked.contains(&old));
                                prop_assert!(accepted.insert(old.clone()), "a token was accepted twice");
                                prop_assert!(s.refresh_tokens.iter().any(|t| t.hash == new.hash));
                            }
                            Err(Refusal::Reused) => prop_assert!(s.refresh_tokens.is_empty()),
                            Err(_) => prop_assert!(!live),
                        }
                        prop_assert!(!s.refresh_tokens.iter().any(|t| t.hash == old));
                    }
                    Op::Revoke(i) => {
                        if let Some(t) = s.refresh_tokens.get(i as usize % (s.refresh_tokens.len() + 1)).cloned() {
                            prop_assert!(s.revoke(&t.hash));
                            revoked.insert(t.hash);
                        }
                    }
                    Op::Wait(ms) => now += ms,
                }
                prop_assert!(s.refresh_tokens.len() <= MAX_REFRESH_TOKENS);
                prop_assert!(s.rotated.len() <= MAX_ROTATED_REMEMBERED);
            }
        }
    }
}
