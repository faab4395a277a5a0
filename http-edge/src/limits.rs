//! Rate limits of the shop API on governor's keyed token buckets: per client address, per
//! signed-in user, and a stricter one on login attempts per client address. Time comes from
//! the `Clock` seam (governor's clock trait over it), so the simulator stays deterministic.
//!
//! The client address is the TCP peer's, unless the peer is a configured trusted proxy: then
//! it is the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries
//! further left were written by the client and prove nothing).

use crate::problem::Problem;
use crate::EdgeState;
use agora_actors::seams::Clock as SeamClock;
use agora_cluster_config::RateLimits;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keys kept per limiter before idle ones are dropped.
const SWEEP_EVERY: u64 = 10_000;

/// An instant of the seam clock, in nanoseconds since the Unix epoch.
#[derive(Debug, Copy, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeamInstant(u64);

impl Add<Nanos> for SeamInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0.saturating_add(other.as_u64()))
    }
}

impl Reference for SeamInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_sub(earlier.0).into()
    }
    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.saturating_sub(duration.as_u64()))
    }
}

/// governor's clock over the `Clock` seam, made monotonic. The wall clock can step back (an
/// NTP correction, a skewed clock put right); a bucket scheduled by the later time would then
/// refuse its key until the wall clock caught up (the simulator found a node answering 429
/// for 18 s after its clock came back from 25 s ahead). Here time moves by the wall clock's
/// forward steps only: a step back counts as no time passing.
#[derive(Clone)]
pub struct GovernorClock {
    wall: Arc<dyn SeamClock>,
    steps: Arc<Mutex<ForwardSteps>>,
}

/// The wall clock's last reading and the time summed from its forward steps.
#[derive(Debug)]
struct ForwardSteps {
    last_wall_ms: u64,
    elapsed_ms: u64,
}

impl GovernorClock {
    /// A monotonic clock over `wall`, starting at its reading now.
    pub fn new(wall: Arc<dyn SeamClock>) -> Self {
        let now_ms = wall.now_ms();
        Self {
            wall,
            steps: Arc::new(Mutex::new(ForwardSteps {
                last_wall_ms: now_ms,
                elapsed_ms: now_ms,
            })),
        }
    }
}

impl Clock for GovernorClock {
    type Instant = SeamInstant;
    fn now(&self) -> SeamInstant {
        let wall_ms = self.wall.now_ms();
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let forward_ms = wall_ms.saturating_sub(steps.last_wall_ms);
        steps.elapsed_ms = steps.elapsed_ms.saturating_add(forward_ms);
        steps.last_wall_ms = wall_ms;
        SeamInstant(steps.elapsed_ms.saturating_mul(1_000_000))
    }
}

type Keyed<K> = RateLimiter<
    K,
    DefaultKeyedStateStore<K>,
    GovernorClock,
    governor::middleware::NoOpMiddleware<SeamInstant>,
>;

/// The edge's rate limiters.
pub struct Limiter {
    per_ip: Keyed<IpAddr>,
    per_user: Keyed<String>,
    login: Keyed<IpAddr>,
    register: Keyed<IpAddr>,
    trusted: Vec<IpAddr>,
    clock: GovernorClock,
    seen: AtomicU64,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn keyed<K: std::hash::Hash + Eq + Clone>(quota: Quota, clock: &GovernorClock) -> Keyed<K> {
    RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone())
}

impl Limiter {
    /// Limiters with `limits`, timed by `clock`.
    pub fn new(limits: &RateLimits, clock: Arc<dyn SeamClock>) -> Self {
        let clock = GovernorClock::new(clock);
        let per_sec = |rate: u32, burst: u32| Quota::per_second(nz(rate)).allow_burst(nz(burst));
        let login_period = Duration::from_millis(60_000 / u64::from(limits.login_per_min.max(1)));
        let login = Quota::with_period(login_period)
            .unwrap_or_else(|| Quota::per_minute(nz(limits.login_per_min)))
            .allow_burst(nz(limits.login_burst));
        Self {
            per_ip: keyed(per_sec(limits.per_ip_per_sec, limits.per_ip_burst), &clock),
            per_user: keyed(
                per_sec(limits.per_user_per_sec, limits.per_user_burst),
                &clock,
            ),
            login: keyed(login, &clock),
            register: keyed(login, &clock),
            trusted: limits.trusted_proxies.clone(),
            clock,
            seen: AtomicU64::new(0),
        }
    }

    /// The client's address: the peer's, or, behind a trusted proxy, the right-most
    /// forwarded address that is not a trusted proxy.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted.contains(&peer) {
            return Some(peer);
        }
        let mut client = peer;
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev().take(16) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusted.contains(&ip) {
                        break;
                    }
                }
                // A garbled entry: trust what came before it (the proxy's own view).
                Err(_) => break,
            }
        }
        Some(client)
    }

    fn retry_after<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &Keyed<K>,
        key: &K,
    ) -> Option<u32> {
        match limiter.check_key(key) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_millis().div_ceil(1000).max(1);
                Some(u32::try_from(secs).unwrap_or(u32::MAX))
            }
        }
    }

    fn sweep(&self) {
        if self.seen.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.per_ip.retain_recent();
            self.per_user.retain_recent();
            self.login.retain_recent();
            self.register.retain_recent();
        }
    }

    /// Checks a request: `Some(seconds)` to wait when it is over a limit.
    pub fn check(
        &self,
        ip: Option<IpAddr>,
        user: Option<&str>,
        credential: Option<Credential>,
    ) -> Option<(u32, &'static str)> {
        self.sweep();
        if let Some(ip) = ip {
            if let Some(s) = self.retry_after(&self.per_ip, &ip) {
                return Some((s, "too many requests from this address"));
            }
            let strict = match credential {
                Some(Credential::Login) => {
                    Some((&self.login, "too many login attempts from this address"))
                }
                Some(Credential::Register) => {
                    Some((&self.register, "too many registrations from this address"))
                }
                None => None,
            };
            if let Some((limiter, why)) = strict {
                if let Some(s) = self.retry_after(limiter, &ip) {
                    return Some((s, why));
                }
            }
        }
        if let Some(user) = user {
            if let Some(s) = self.retry_after(&self.per_user, &user.to_string()) {
                return Some((s, "too many requests for this account"));
            }
        }
        None
    }
}

/// A route that hashes a password, limited per client address more strictly than the rest
/// (each costs an argon2 run): logins and registrations, each with its own bucket of the
/// login quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `POST /api/v1/auth/login`.
    Login,
    /// `POST /api/v1/users`.
    Register,
}

impl Credential {
    /// The credential route `method` and `path` name, if any.
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        match (method == Method::POST, path) {
            (true, "/api/v1/auth/login") => Some(Credential::Login),
            (true, "/api/v1/users") => Some(Credential::Register),
            _ => None,
        }
    }
}

/// The client's address for `st`: behind a trusted proxy (rate limits on) the forwarded
/// one, otherwise the TCP peer's.
pub fn client_address(st: &EdgeState, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    match &st.limiter {
        Some(limiter) => limiter.client_ip(peer, headers),
        None => peer,
    }
}

/// A 429 problem with `Retry-After`.
pub fn too_many(retry_after: u32, detail: &str) -> Problem {
    let mut p = Problem::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        detail,
    );
    p.retry_after = Some(retry_after);
    p
}

/// The middleware: applies the limits before the route runs.
pub async fn enforce(State(st): State<Arc<EdgeState>>, req: Request, next: Next) -> Response {
    let Some(limiter) = &st.limiter else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = limiter.client_ip(peer, req.headers());
    // The user of a valid token (an invalid one is refused by the route anyway).
    let user = crate::extract::bearer(req.headers())
        .and_then(|t| st.keys.verify(t, st.clock.now_ms() / 1000).ok())
        .map(|c| c.sub);
    let credential = Credential::of(req.method(), req.uri().path());
    if let Some((secs, why)) = limiter.check(ip, user.as_deref(), credential) {
        metrics::counter!("agora_rate_limited_total").increment(1);
        return too_many(secs, why).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    use crate::testing::TestClock;

    fn limits() -> RateLimits {
        RateLimits {
            per_ip_per_sec: 2,
            per_ip_burst: 3,
            per_user_per_sec: 1,
            per_user_burst: 2,
            login_per_min: 2,
            login_burst: 2,
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
            ..RateLimits::default()
        }
    }

    #[test]
    fn buckets_follow_the_seam_clock() {
        let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
        let l = Limiter::new(&limits(), clock.clone());
        let ip = Some("1.2.3.4".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.check(ip, None, None), None);
        }
        let (wait, _) = l.check(ip, None, None).unwrap();
        assert_eq!(wait, 1);
        clock.0.fetch_add(500, Ordering::SeqCst);
        assert_eq!(l.check(ip, None, None), None);
        // Another address has its own bucket.
        assert_eq!(l.check(Some("5.6.7.8".parse().unwrap()), None, None), None);
    }

    #[test]
    fn a_wall_clock_that_steps_back_neither_refuses_nor_refills() {
        let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
        let l = Limiter::new(&limits(), clock.clone());
        let ip = Some("1.2.3.4".parse().unwrap());
        // 25 s ahead (a skewed clock), the burst is spent...
        clock.0.fetch_add(25_000, Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(l.check(ip, None, None), None);
        }
        assert_eq!(l.check(ip, None, None).map(|(s, _)| s), Some(1));
        // ...and put right: no time passed, so still over for about a second, not for 25.
        clock.0.fetch_sub(25_000, Ordering::SeqCst);
        assert_eq!(l.check(ip, None, None).map(|(s, _)| s), Some(1));
        clock.0.fetch_add(500, Ordering::SeqCst);
        assert_eq!(l.check(ip, None, None), None);
    }

    /// A limiter whose per-address limit is out of the way, and its clock.
    fn generous_per_ip() -> (Arc<TestClock>, Limiter) {
        let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
        let mut lim = limits();
        lim.per_ip_per_sec = 1000;
        lim.per_ip_burst = 1000;
        let l = Limiter::new(&lim, clock.clone());
        (clock, l)
    }

    #[test]
    fn logins_and_users_have_their_own_stricter_buckets() {
        let (_clock, l) = generous_per_ip();
        let ip = Some("1.2.3.4".parse().unwrap());
        assert_eq!(l.check(ip, None, Some(Credential::Login)), None);
        assert_eq!(l.check(ip, None, Some(Credential::Login)), None);
        let (wait, _) = l.check(ip, None, Some(Credential::Login)).unwrap();
        assert_eq!(wait, 30);
        assert_eq!(l.check(ip, None, None), None);
        assert_eq!(l.check(ip, Some("u1"), None), None);
        assert_eq!(l.check(ip, Some("u1"), None), None);
        assert!(l.check(ip, Some("u1"), None).is_some());
        assert_eq!(l.check(ip, Some("u2"), None), None);
    }

    #[test]
    fn registrations_are_limited_per_address_like_logins_in_their_own_bucket() {
        let (clock, l) = generous_per_ip();
        let ip = Some("1.2.3.4".parse().unwrap());
        let register = Credential::of(&Method::POST, "/api/v1/users");
        assert_eq!(register, Some(Credential::Register));
        assert_eq!(Credential::of(&Method::GET, "/api/v1/users"), None);
        assert_eq!(l.check(ip, None, register), None);
        assert_eq!(l.check(ip, None, register), None);
        let (wait, why) = l.check(ip, None, register).expect("the third is limited");
        assert_eq!(wait, 30);
        assert!(why.contains("registrations"), "{why}");
        // Logins from that address, and registrations from another, have their own buckets.
        assert_eq!(l.check(ip, None, Some(Credential::Login)), None);
        assert_eq!(
            l.check(Some("5.6.7.8".parse().unwrap()), None, register),
            None
        );
        clock.0.fetch_add(30_000, Ordering::SeqCst);
        assert_eq!(l.check(ip, None, register), None);
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let l = Limiter::new(&limits(), Arc::new(TestClock(AtomicU64::new(0))));
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 7.7.7.7, 10.0.0.1".parse().unwrap(),
        );
        let proxy = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("9.9.9.9".parse().unwrap());
        assert_eq!(l.client_ip(proxy, &h), Some("7.7.7.7".parse().unwrap()));
        assert_eq!(l.client_ip(stranger, &h), stranger);
        assert_eq!(l.client_ip(proxy, &HeaderMap::new()), proxy);
        assert_eq!(l.client_ip(None, &h), None);
    }
}
