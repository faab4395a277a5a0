//! Tokens (JWT, HS256) and passwords (argon2id). Hashing runs on the blocking pool seam,
//! off the async workers, at most a few at once (`Passwords`); token expiry is checked
//! against the `Clock` seam.

use crate::problem::Problem;
use agora_actors::seams::BlockingPool;
use agora_actors::seams::RandomSource;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

/// The claims in an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Role name.
    pub role: String,
    /// Issued at (seconds since epoch).
    pub iat: u64,
    /// Expires at (seconds since epoch).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
}

const ISSUER: &str = "agora";

/// The signing keys for access tokens.
pub struct JwtKeys {
    /// The key id (`kid`) new tokens carry.
    current_kid: String,
    encoding: EncodingKey,
    /// Every accepted key by id: the current one and those of earlier rotations.
    decoding: std::collections::BTreeMap<String, DecodingKey>,
    validation: Validation,
    /// Token lifetime in seconds.
    pub ttl_secs: u64,
}

/// One signing key and its id (`kid` in the token header).
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// The key's id.
    pub kid: String,
    /// The key (at least 32 bytes).
    pub secret: Vec<u8>,
}

impl JwtKeys {
    /// Keys from one shared secret (at least 32 bytes).
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let current = JwtKey {
            kid: "current".into(),
            secret: secret.to_vec(),
        };
        Self::rotating(current, Vec::new(), ttl_secs)
    }

    /// Tokens are signed with `current`; tokens of `previous` keys are still accepted,
    /// each key chosen by the token's `kid`.
    pub fn rotating(current: JwtKey, previous: Vec<JwtKey>, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the Clock seam below, not the system clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[ISSUER]);
        let mut decoding: std::collections::BTreeMap<String, DecodingKey> = previous
            .iter()
            .map(|k| (k.kid.clone(), DecodingKey::from_secret(&k.secret)))
            .collect();
        decoding.insert(
            current.kid.clone(),
            DecodingKey::from_secret(&current.secret),
        );
        Self {
            current_kid: current.kid,
            encoding: EncodingKey::from_secret(&current.secret),
            decoding,
            validation,
            ttl_secs,
        }
    }

    /// Issues a token for `user_id` with `role`, valid from `now_secs`.
    pub fn issue(&self, user_id: &str, role: &str, now_secs: u64) -> Result<String, Problem> {
        let claims = Claims {
            sub: user_id.into(),
            role: role.into(),
            iat: now_secs,
            exp: now_secs + self.ttl_secs,
            iss: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Problem::internal(format!("cannot sign a token: {e}")))
    }

    /// Verifies a token's signature, issuer and expiry.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, Problem> {
        if token.len() > 4096 {
            return Err(Problem::unauthorized("token too long"));
        }
        let invalid = || Problem::unauthorized("invalid token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        // A token without a key id (issued before rotation existed) is checked against the
        // current key; an unknown key id is refused.
        let kid = header.kid.unwrap_or_else(|| self.current_kid.clone());
        let key = self.decoding.get(&kid).ok_or_else(invalid)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|_| invalid())?;
        if data.claims.exp <= now_secs {
            return Err(Problem::unauthorized("token expired"));
        }
        Ok(data.claims)
    }
}

/// Bounds on password hashing: each argon2id run holds about 19 MiB, so only a few run at
/// once and the rest wait their turn for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Most hashes (or checks) computed at once (at least 1).
    pub max_concurrent: usize,
    /// How long a request waits for a turn before it is answered 503.
    pub max_wait: Duration,
}

impl Default for HashLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// How much work one password hash costs. A check costs what its stored hash says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordCost {
    /// argon2id with OWASP's parameters (19 MiB, 2 passes): every real node.
    #[default]
    Standard,
    /// argon2id at its minimum (8 KiB, 1 pass): only for the simulator, whose hashes run
    /// inline and whose CPU time is not simulated (a run signs in hundreds of shoppers).
    Minimal,
}

/// argon2's smallest parameters (checked when compiled).
const MINIMAL_PARAMS: argon2::Params = match argon2::Params::new(8, 1, 1, None) {
    Ok(p) => p,
    Err(_) => panic!("argon2's minimum parameters are valid"),
};

impl PasswordCost {
    /// The argon2id hasher at this cost.
    pub fn hasher(self) -> Argon2<'static> {
        match self {
            Self::Standard => Argon2::default(),
            Self::Minimal => Argon2::from(MINIMAL_PARAMS),
        }
    }
}

/// The gate every password hash and check passes: at most `max_concurrent` run at once on
/// the blocking pool; the others queue (first come, first served) for at most `max_wait`,
/// then get 503 with `Retry-After`.
pub struct Passwords {
    permits: Arc<Semaphore>,
    limits: HashLimits,
    cost: PasswordCost,
    /// A hash no password matches, checked for unknown emails so they take as long as known
    /// ones (made on first use).
    dummy: OnceCell<String>,
}

impl Passwords {
    /// A gate with `limits` (a `max_concurrent` of 0 is taken as 1).
    pub fn new(limits: HashLimits) -> Self {
        let limits = HashLimits {
            max_concurrent: limits.max_concurrent.max(1),
            ..limits
        };
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
            cost: PasswordCost::Standard,
            dummy: OnceCell::new(),
        }
    }

    /// The same gate hashing new passwords at `cost`.
    pub fn with_cost(self, cost: PasswordCost) -> Self {
        Self { cost, ..self }
    }

    /// A turn to hash, waiting at most `max_wait`; the permit is held by the blocking job.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, Problem> {
        let acquire = self.permits.clone().acquire_owned();
        match tokio::time::timeout(self.limits.max_wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(Problem::internal("the password gate is closed")),
            Err(_elapsed) => {
                metrics::counter!("agora_password_hash_busy_total").increment(1);
                let wait_ms = self.limits.max_wait.as_millis();
                tracing::warn!(
                    max_concurrent = self.limits.max_concurrent,
                    max_wait_ms = u64::try_from(wait_ms).unwrap_or(u64::MAX),
                    "password hashing is saturated: answered 503"
                );
                let retry_after_secs = u32::try_from(wait_ms.div_ceil(1000).max(1));
                Err(busy(retry_after_secs.unwrap_or(u32::MAX)))
            }
        }
    }

    /// Runs `job` on `pool` in a turn (the permit is released when the job ends, even if
    /// the request is gone).
    async fn in_turn<T: Send + 'static>(
        &self,
        pool: &Arc<dyn BlockingPool>,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Problem> {
        let permit = self.turn().await?;
        crate::run_blocking(pool, move || {
            let out = job();
            drop(permit);
            out
        })
        .await
    }

    /// Hashes a password with argon2id and a salt from the random seam.
    pub async fn hash(
        &self,
        pool: &Arc<dyn BlockingPool>,
        rng: &Arc<dyn RandomSource>,
        password: String,
    ) -> Result<String, Problem> {
        let mut salt = [0u8; 16];
        rng.fill(&mut salt);
        let hasher = self.cost.hasher();
        self.in_turn(pool, move || {
            hasher
                .hash_password_with_salt(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Problem::internal(format!("cannot hash a password: {e}")))
        })
        .await?
    }

    /// Whether `password` matches the argon2 PHC string `hash`.
    pub async fn verify(
        &self,
        pool: &Arc<dyn BlockingPool>,
        password: String,
        hash: String,
    ) -> Result<bool, Problem> {
        let hasher = self.cost.hasher();
        self.in_turn(pool, move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            hasher.verify_password(password.as_bytes(), &parsed).is_ok()
        })
        .await
    }

    /// Checks `password` against a hash no password matches (always `false`), taking as long
    /// as a real check: for unknown emails, so that they cannot be told from known ones.
    pub async fn verify_unknown(
        &self,
        pool: &Arc<dyn BlockingPool>,
        rng: &Arc<dyn RandomSource>,
        password: String,
    ) -> Result<bool, Problem> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                let unguessable: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                self.hash(pool, rng, unguessable).await
            })
            .await?
            .clone();
        self.verify(pool, password, dummy).await?;
        Ok(false)
    }
}

/// 503 `busy` with `Retry-After`: too many password hashes at once.
fn busy(retry_after_secs: u32) -> Problem {
    let mut p = Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "Service busy",
        "too many password checks at once; retry later",
    );
    p.retry_after = Some(retry_after_secs);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use std::sync::Mutex;

    type Job = Box<dyn FnOnce() + Send>;

    /// A pool that keeps its jobs until the test runs them.
    #[derive(Default)]
    struct Held(Mutex<Vec<Job>>);

    impl BlockingPool for Held {
        fn run(&self, job: Job) {
            self.0.lock().expect("held jobs").push(job);
        }
    }

    impl Held {
        fn len(&self) -> usize {
            self.0.lock().expect("held jobs").len()
        }
        fn run_all(&self) {
            let jobs: Vec<Job> = std::mem::take(&mut *self.0.lock().expect("held jobs"));
            jobs.into_iter().for_each(|job| job());
        }
    }

    /// A pool that runs each job at once, on the caller's thread.
    struct Inline;
    impl BlockingPool for Inline {
        fn run(&self, job: Job) {
            job()
        }
    }

    struct Sevens;
    impl RandomSource for Sevens {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(7)
        }
    }

    async fn yield_many() {
        for _ in 0..200 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn at_most_n_hashes_run_at_once_and_the_rest_wait_their_turn() {
        let passwords = Arc::new(Passwords::new(HashLimits {
            max_concurrent: 2,
            max_wait: Duration::from_secs(3600),
        }));
        let held = Arc::new(Held::default());
        let pool: Arc<dyn BlockingPool> = held.clone();
        let rng: Arc<dyn RandomSource> = Arc::new(Sevens);
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let (passwords, pool, rng) = (passwords.clone(), pool.clone(), rng.clone());
                tokio::spawn(
                    async move { passwords.hash(&pool, &rng, format!("password-{i}")).await },
                )
            })
            .collect();
        let mut done = 0;
        while done < 5 {
            yield_many().await;
            let running = held.len();
            assert!(running <= 2, "{running} hashes at once");
            assert!(running > 0, "a waiting hash gets its turn");
            done += running;
            held.run_all();
        }
        for t in tasks {
            let hash = t.await.expect("task").expect("hashed");
            assert!(hash.starts_with("$argon2id$"), "{hash}");
        }
    }

    #[tokio::test]
    async fn a_request_that_waits_past_the_deadline_gets_503_problem_json_with_retry_after() {
        let passwords = Passwords::new(HashLimits {
            max_concurrent: 1,
            max_wait: Duration::ZERO,
        });
        let inline: Arc<dyn BlockingPool> = Arc::new(Inline);
        let busy = passwords
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("permit");
        let r = passwords.verify(&inline, "pw".into(), "hash".into()).await;
        let problem = r.expect_err("no turn within the deadline");
        assert_eq!(problem.retry_after, Some(1));
        let resp = problem.into_response();
        assert_eq!(resp.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        drop(busy);
    }

    #[tokio::test]
    async fn a_hash_carries_its_cost_and_any_gate_checks_it_at_that_cost() {
        let inline: Arc<dyn BlockingPool> = Arc::new(Inline);
        let rng: Arc<dyn RandomSource> = Arc::new(Sevens);
        let standard = Passwords::new(HashLimits::default());
        let minimal = Passwords::new(HashLimits::default()).with_cost(PasswordCost::Minimal);
        let strong = standard.hash(&inline, &rng, "pw".into()).await.unwrap();
        let cheap = minimal.hash(&inline, &rng, "pw".into()).await.unwrap();
        assert!(
            strong.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{strong}"
        );
        assert!(cheap.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{cheap}");
        for gate in [&standard, &minimal] {
            for hash in [&strong, &cheap] {
                assert!(gate
                    .verify(&inline, "pw".into(), hash.clone())
                    .await
                    .unwrap());
                assert!(!gate
                    .verify(&inline, "pX".into(), hash.clone())
                    .await
                    .unwrap());
            }
        }
    }

    #[test]
    fn tokens_verify_and_expire() {
        let keys = JwtKeys::new(&[7u8; 32], 60);
        let t = keys.issue("u1", "customer", 1000).unwrap();
        assert_eq!(keys.verify(&t, 1000).unwrap().sub, "u1");
        assert!(keys.verify(&t, 1060).is_err());
        let other = JwtKeys::new(&[8u8; 32], 60);
        assert!(other.verify(&t, 1000).is_err());
        assert!(keys.verify("garbage", 1000).is_err());
    }

    #[test]
    fn a_rotated_key_still_verifies_its_tokens_and_unknown_keys_are_refused() {
        let key = |kid: &str, b: u8| JwtKey {
            kid: kid.into(),
            secret: vec![b; 32],
        };
        let old = JwtKeys::rotating(key("a", 1), Vec::new(), 60);
        let old_token = old.issue("u1", "customer", 1000).unwrap();
        let rotated = JwtKeys::rotating(key("b", 2), vec![key("a", 1)], 60);
        assert_eq!(rotated.verify(&old_token, 1000).unwrap().sub, "u1");
        let new_token = rotated.issue("u2", "customer", 1000).unwrap();
        assert_eq!(rotated.verify(&new_token, 1000).unwrap().sub, "u2");
        // Once the old key is dropped, its tokens are refused.
        let later = JwtKeys::rotating(key("b", 2), Vec::new(), 60);
        assert!(later.verify(&old_token, 1000).is_err());
        // A token naming key "b" but signed with key "a" is refused.
        let forged = JwtKeys::rotating(key("b", 1), Vec::new(), 60)
            .issue("admin", "admin", 1000)
            .unwrap();
        assert!(rotated.verify(&forged, 1000).is_err());
    }
}
