//! Pulls catalog facts from every peer, so each node lists products and stock held by any
//! node's shards. A peer that restarted (new incarnation) is pulled from the start.

use super::directory::Directory;
use super::directory::GatewayRpc;
use super::envelope::{decode, encode};
use agora_catalog::{CatalogProjection, FactsSince};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often each peer is asked.
pub const PULL_INTERVAL: Duration = Duration::from_millis(250);
/// How long one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts pulling from every connected peer, forever.
pub fn start(directory: Directory, catalog: Arc<CatalogProjection>) {
    tokio::spawn(async move {
        // Per peer: (incarnation, version) seen so far.
        let mut seen: HashMap<u64, (u64, u64)> = HashMap::new();
        loop {
            for peer in &directory.connected_peers() {
                let Some(gw) = directory.gateway(*peer) else {
                    continue;
                };
                let (incarnation, version) = seen.get(peer).copied().unwrap_or((0, 0));
                let Ok(ask) = encode(&version) else { continue };
                let answer = match gw.call(GatewayRpc::CatalogSince, ask, PULL_TIMEOUT).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "catalog pull failed");
                        continue;
                    }
                };
                let Ok(mut facts) = decode::<FactsSince>(&answer) else {
                    continue;
                };
                if facts.incarnation != incarnation && version != 0 {
                    // The peer restarted: its versions started again; pull everything.
                    let Ok(ask) = encode(&0u64) else { continue };
                    match gw
                        .call(GatewayRpc::CatalogSince, ask, PULL_TIMEOUT)
                        .await
                        .ok()
                        .and_then(|a| decode::<FactsSince>(&a).ok())
                    {
                        Some(f) => facts = f,
                        None => continue,
                    }
                }
                catalog.apply_remote(&facts.facts);
                metrics::counter!("agora_catalog_facts_pulled_total")
                    .increment(facts.facts.len() as u64);
                seen.insert(*peer, (facts.incarnation, facts.version));
            }
            tokio::time::sleep(PULL_INTERVAL).await;
        }
    });
}
