//! Pulls catalog facts from every peer, so each node lists products and stock held by any
//! node's shards. A peer that restarted (new incarnation) is pulled from the start.

use super::directory::Directory;
use super::directory::{GatewayRpc, PeerGateway};
use super::envelope::{decode, encode};
use agora_catalog::{CatalogProjection, FactsSince};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often each peer is asked.
pub const PULL_INTERVAL: Duration = Duration::from_millis(250);
/// How long one pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(2);
/// About how many bytes of facts one answer carries: a large catalogue comes in pages, each
/// far below a cluster frame (an answer over the frame limit closes the connection).
pub const PAGE_BYTES: usize = 1 << 20;
/// Pages pulled from one peer before the next peer's turn.
const PAGES_PER_TURN: usize = 64;

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
                for _ in 0..PAGES_PER_TURN {
                    let before = seen.get(peer).copied().unwrap_or((0, 0));
                    let Some(facts) = pull(&gw, *peer, before).await else {
                        break;
                    };
                    catalog.apply_remote(&facts.facts);
                    metrics::counter!("agora_catalog_facts_pulled_total")
                        .increment(facts.facts.len() as u64);
                    seen.insert(*peer, (facts.incarnation, facts.version));
                    if !page_was_full(&facts) {
                        break;
                    }
                }
            }
            tokio::time::sleep(PULL_INTERVAL).await;
        }
    });
}

/// Whether a page may have been cut at `PAGE_BYTES` (more facts wait): pulled again at once,
/// otherwise at the next turn. An answer well below the bound held every newer fact.
fn page_was_full(page: &FactsSince) -> bool {
    let bytes: usize = page
        .facts
        .iter()
        .map(|(sku, f)| sku.len() + f.approx_bytes())
        .sum();
    bytes >= PAGE_BYTES / 2
}

/// One page of `peer`'s facts after `(incarnation, version)`; from the start when the peer
/// restarted since (its versions started again).
async fn pull(
    gw: &PeerGateway,
    peer: u64,
    (incarnation, version): (u64, u64),
) -> Option<FactsSince> {
    let facts = pull_since(gw, peer, version).await?;
    if facts.incarnation != incarnation && version != 0 {
        return pull_since(gw, peer, 0).await;
    }
    Some(facts)
}

/// One page of `peer`'s facts newer than `version`.
async fn pull_since(gw: &PeerGateway, peer: u64, version: u64) -> Option<FactsSince> {
    let ask = encode(&version).ok()?;
    match gw.call(GatewayRpc::CatalogSince, ask, PULL_TIMEOUT).await {
        Ok(answer) => decode::<FactsSince>(&answer).ok(),
        Err(e) => {
            tracing::debug!(peer, error = %e, "catalog pull failed");
            None
        }
    }
}
