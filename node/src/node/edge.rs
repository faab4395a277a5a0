//! The shop API's state: its signing keys, password hashing and lockout bounds, limits and
//! the client it reaches entities through.

use super::{ClusterSpec, Secrets, META_JWT_SECRET};
use agora_actors::client::EntityClient;
use agora_actors::gateway::CardTokeniser;
use agora_actors::seams::{Clock, RandomSource};
use agora_catalog::CatalogProjection;
use agora_cluster_config::NodeSettings;
use agora_http_edge::auth::{JwtKey, JwtKeys, PasswordCost};
use agora_http_edge::{EdgeConfig, EdgeState};
use agora_seams::BlockingPool;
use agora_store::{Store, Writer};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

/// The seams the shop API reads: blocking work, the clock and randomness.
pub(super) type EdgeSeams = (
    Arc<dyn BlockingPool>,
    Arc<dyn Clock>,
    Arc<dyn RandomSource>,
    PasswordCost,
);

/// The admin endpoint's token (the environment's, else the cluster file's, else one made
/// now), and the one made now, if any, to print once.
pub(super) fn admin_token(
    secrets: &Secrets,
    cluster: Option<&ClusterSpec>,
    rng: &dyn RandomSource,
) -> (Option<String>, Option<String>) {
    let configured = secrets
        .admin_token
        .clone()
        .or_else(|| cluster.and_then(|c| c.admin_token.clone()));
    if configured.is_some() {
        return (configured, None);
    }
    let mut t = [0u8; 24];
    rng.fill(&mut t);
    let generated: String = t.iter().map(|b| format!("{b:02x}")).collect();
    (Some(generated.clone()), Some(generated))
}

/// The shop API's state, its token keys read or made first.
pub(super) async fn shop_edge(
    settings: &NodeSettings,
    secrets: &Secrets,
    cluster: Option<&ClusterSpec>,
    (store, writer): (&Store, &Writer),
    (cards, client, catalog): (
        Arc<dyn CardTokeniser>,
        Arc<dyn EntityClient>,
        Arc<CatalogProjection>,
    ),
    (blocking, clock, rng, password_cost): EdgeSeams,
) -> anyhow::Result<Arc<EdgeState>> {
    let (jwt_current, jwt_previous) =
        jwt_keys(store, writer, rng.as_ref(), secrets, cluster).await?;
    Ok(Arc::new(EdgeState {
        cards,
        client,
        catalog: catalog.clone(),
        keys: JwtKeys::rotating(jwt_current, jwt_previous, settings.token_ttl_secs),
        passwords: agora_http_edge::auth::Passwords::new(agora_http_edge::auth::HashLimits {
            max_concurrent: settings.password_hashes_at_once as usize,
            max_wait: Duration::from_millis(settings.password_hash_wait_ms),
        })
        .with_cost(password_cost),
        lockouts: agora_http_edge::lockout::Lockouts::new(
            agora_actors::session::LockoutPolicy {
                base_ms: settings.lockout_base_ms,
                ..Default::default()
            },
            clock.clone(),
        ),
        blocking: blocking.clone(),
        clock: clock.clone(),
        rng: rng.clone(),
        config: EdgeConfig {
            body_limit: settings.body_limit_bytes,
            token_ttl: Duration::from_secs(settings.token_ttl_secs),
            refresh_ttl: Duration::from_secs(settings.refresh_token_ttl_secs),
            webhook_secret: secrets
                .webhook_secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec()),
            cors_origins: settings.cors_allowed_origins.clone(),
            ..EdgeConfig::default()
        },
        limiter: settings
            .rate_limits
            .enabled
            .then(|| agora_http_edge::limits::Limiter::new(&settings.rate_limits, clock.clone())),
    }))
}

/// A signing key, its id the first 8 bytes of its SHA-256 in hex (so rotating needs no
/// names: every node derives the same id from the same key).
fn jwt_key(secret: Vec<u8>) -> JwtKey {
    let digest = sha2::Sha256::digest(&secret);
    let kid = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    JwtKey { kid, secret }
}

/// The access-token keys: the environment's, else the cluster file's (a cluster has no
/// other: a key derived from the node-to-node secret would let anyone who learns that secret
/// mint tokens), else for a single node one generated once and kept in the store.
async fn jwt_keys(
    store: &Store,
    writer: &Writer,
    rng: &dyn RandomSource,
    secrets: &Secrets,
    cluster: Option<&ClusterSpec>,
) -> anyhow::Result<(JwtKey, Vec<JwtKey>)> {
    let mut previous: Vec<JwtKey> = secrets
        .jwt_previous_secrets
        .iter()
        .chain(
            cluster
                .into_iter()
                .flat_map(|c| c.jwt_previous_secrets.iter()),
        )
        .map(|s| jwt_key(s.clone().into_bytes()))
        .collect();
    previous.dedup_by(|a, b| a.kid == b.kid);
    let configured = secrets
        .jwt_secret
        .clone()
        .or_else(|| cluster.and_then(|c| c.jwt_secret.clone()));
    if let Some(s) = configured {
        anyhow::ensure!(s.len() >= 32, "the JWT secret must be at least 32 bytes");
        return Ok((jwt_key(s.into_bytes()), previous));
    }
    anyhow::ensure!(
        cluster.is_none(),
        "jwt_secret: missing: set jwt_secret in the cluster file (or AGORA_JWT_SECRET) to 32 or more random bytes, the same on every node"
    );
    if let Some(s) = store.meta(META_JWT_SECRET)? {
        return Ok((jwt_key(s), previous));
    }
    let mut s = vec![0u8; 32];
    rng.fill(&mut s);
    writer.put_meta(META_JWT_SECRET, s.clone()).await?;
    Ok((jwt_key(s), previous))
}
