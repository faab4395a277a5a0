//! Seams for the edge's unit tests: a state whose outside services do nothing.

use crate::catalog::{Catalog, CatalogError, CatalogPage, CatalogQuery};
use crate::{EdgeConfig, EdgeState};
use agora_actors::client::{AskError, EntityClient};
use agora_actors::seams::BlockingPool;
use agora_actors::seams::{Clock, RandomSource};
use agora_actors::{Command, EntityRef, Reply};
use std::sync::Arc;

/// The token secret of test states.
pub(crate) const SECRET: &[u8] = b"test secret of enough length....";

/// No entities, an empty catalog, a fixed clock and fixed randomness.
pub(crate) struct Nobody;

#[async_trait::async_trait]
impl EntityClient for Nobody {
    async fn ask(&self, _to: EntityRef, _cmd: Command) -> Result<Reply, AskError> {
        Err(AskError::Unavailable("no entities in this test".into()))
    }

    async fn ask_once(
        &self,
        _to: EntityRef,
        _cmd: Command,
        _msg_id: String,
    ) -> Result<Reply, AskError> {
        Err(AskError::Unavailable("no entities in this test".into()))
    }
}

impl Catalog for Nobody {
    fn search(&self, _query: &CatalogQuery) -> Result<CatalogPage, CatalogError> {
        Ok(CatalogPage::default())
    }
}

impl BlockingPool for Nobody {
    fn run(&self, job: Box<dyn FnOnce() + Send>) {
        job()
    }
}

impl Clock for Nobody {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000
    }
}

impl RandomSource for Nobody {
    fn fill(&self, buf: &mut [u8]) {
        buf.fill(7)
    }
}

/// A clock the test moves by hand (ms since the epoch).
pub(crate) struct TestClock(pub(crate) std::sync::atomic::AtomicU64);

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An edge state over `client`, with `Nobody` for everything else.
pub(crate) fn state(client: Arc<dyn EntityClient>) -> Arc<EdgeState> {
    state_with_pool(client, Arc::new(Nobody))
}

/// An edge state over `client` whose blocking work runs on `blocking`.
pub(crate) fn state_with_pool(
    client: Arc<dyn EntityClient>,
    blocking: Arc<dyn BlockingPool>,
) -> Arc<EdgeState> {
    Arc::new(EdgeState {
        client,
        catalog: Arc::new(Nobody),
        keys: crate::auth::JwtKeys::new(SECRET, 60),
        passwords: crate::auth::Passwords::new(crate::auth::HashLimits::default()),
        lockouts: crate::lockout::Lockouts::new(Default::default(), Arc::new(Nobody)),
        blocking,
        clock: Arc::new(Nobody),
        rng: Arc::new(Nobody),
        config: EdgeConfig::default(),
        limiter: None,
        // Unreachable failure: this module is compiled for tests only, and TEST_CARD_KEY is a
        // constant of the length CardVault::new requires (it refuses only short keys).
        cards: Arc::new(
            agora_actors::card::CardVault::new(agora_actors::card::TEST_CARD_KEY)
                .expect("the test key is long enough"),
        ),
    })
}
