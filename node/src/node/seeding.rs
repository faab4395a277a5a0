//! Seeding at start: the admin account and, once, the demo catalog. A cluster's first node
//! seeds in the background, since its peers may not be up yet.

use super::META_DEMO_SEEDED;
use crate::seed::{self, AdminSeed};
use agora_actors::client::EntityClient;
use agora_actors::seams::RandomSource;
use agora_cluster::router::Router;
use agora_store::{Store, Writer};
use std::sync::Arc;
use std::time::Duration;

/// The randomness for salts and the cost of a new password hash.
type Hashing = (Arc<dyn RandomSource>, agora_http_edge::auth::PasswordCost);

/// Seeds a single node now (its answer shows a generated password once), a cluster's
/// seeder in the background, and nothing on the cluster's other nodes.
pub(super) async fn seed(
    (in_cluster, seeder): (bool, bool),
    router: &Router,
    (store, writer): (&Store, &Writer),
    hashing: Hashing,
    (admin_password, demo): (Option<String>, bool),
) -> anyhow::Result<Option<AdminSeed>> {
    Ok(match (in_cluster, seeder) {
        (false, _) => Some(seed_all(router, store, writer, hashing, admin_password, demo).await?),
        (true, true) => {
            // The other nodes may not be up yet: seed in the background, retrying.
            let (router, store, writer, pw, demo) = (
                router.clone(),
                store.clone(),
                writer.clone(),
                admin_password,
                demo,
            );
            tokio::spawn(async move {
                for attempt in 0..240u32 {
                    match seed_all(&router, &store, &writer, hashing.clone(), pw.clone(), demo)
                        .await
                    {
                        Ok(_) => return tracing::info!("cluster seeded"),
                        Err(e) => {
                            tracing::debug!(attempt, error = %e, "seeding waits for the cluster")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                tracing::error!("could not seed the cluster in 2 minutes");
            });
            None
        }
        (true, false) => None,
    })
}

/// Seeds the admin account and (once) the demo catalog.
async fn seed_all(
    client: &dyn EntityClient,
    store: &Store,
    writer: &Writer,
    (rng, cost): Hashing,
    admin_password: Option<String>,
    demo: bool,
) -> anyhow::Result<AdminSeed> {
    let mut generated = [0u8; 12];
    rng.fill(&mut generated);
    let generated: String = generated.iter().map(|b| format!("{b:02x}")).collect();
    let hash = move |p: String| {
        let mut salt = [0u8; 16];
        rng.fill(&mut salt);
        use argon2::password_hash::PasswordHasher;
        cost.hasher()
            .hash_password_with_salt(p.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    };
    let verify = |p: &str, h: &str| {
        use argon2::password_hash::{phc::PasswordHash, PasswordVerifier};
        PasswordHash::new(h).is_ok_and(|h| cost.hasher().verify_password(p.as_bytes(), &h).is_ok())
    };
    let admin = seed::seed_admin(client, admin_password, generated, hash, verify)
        .await
        .map_err(anyhow::Error::msg)?;
    if demo && store.meta(META_DEMO_SEEDED)?.is_none() {
        let n = seed::seed_demo_catalog(client).await?;
        writer.put_meta(META_DEMO_SEEDED, vec![1]).await?;
        tracing::info!(products = n, "demo catalog seeded");
    }
    Ok(admin)
}
