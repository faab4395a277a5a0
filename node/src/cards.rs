//! Card tokens at node start: the in-process simulated gateway's card vault, and the record
//! format 3 → 4 migration that replaces stored card numbers with the gateway's references.

use agora_actors::card::{CardRef, CardVault};
use agora_actors::gateway::CardTokeniser;
use agora_actors::seams::RandomSource;
use agora_store::migrate::{self, LogRewrite, META_STORE_FORMAT};
use agora_store::record::FORMAT_VERSION;
use agora_store::Store;
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Metadata name of a single node's simulated-gateway card key (generated once).
const META_SIM_CARD_KEY: &str = "sim_gateway_card_key";

/// The in-process simulated gateway's card vault. Its key is `configured`
/// (`AGORA_GATEWAY_TOKEN_KEY`), else derived from the cluster's node-to-node secret (the same
/// on every node, so any node charges any node's tokens), else for a single node one
/// generated once and kept in the store: tokens survive restarts either way. A real gateway
/// (`--payment-gateway-url`) keeps its key to itself.
pub fn sim_vault(
    store: &Store,
    rng: &dyn RandomSource,
    configured: Option<&str>,
    cluster_secret: Option<&str>,
) -> anyhow::Result<Arc<CardVault>> {
    let key = match (configured, cluster_secret) {
        (Some(k), _) => k.as_bytes().to_vec(),
        (None, Some(s)) => format!("agora-simulated-gateway-card-key:{s}").into_bytes(),
        (None, None) => match store.meta(META_SIM_CARD_KEY)? {
            Some(k) => k,
            None => {
                let mut k = vec![0u8; 32];
                rng.fill(&mut k);
                store.put_meta_now(META_SIM_CARD_KEY, &k)?;
                k
            }
        },
    };
    let vault = CardVault::new(&key).context("AGORA_GATEWAY_TOKEN_KEY")?;
    Ok(Arc::new(vault))
}

/// The payment gateway a node uses: the HTTP service, or the in-process simulation with
/// its card vault.
pub enum GatewayChoice {
    /// `--payment-gateway-url`.
    Http(Arc<crate::payment_http::HttpGateway>),
    /// The in-process simulated gateway's vault.
    Sim(Arc<CardVault>),
}

impl GatewayChoice {
    /// Where card numbers are exchanged for references.
    pub fn cards(&self) -> Arc<dyn CardTokeniser> {
        match self {
            GatewayChoice::Http(h) => h.clone(),
            GatewayChoice::Sim(v) => v.clone(),
        }
    }
}

/// A replication log entry's rows rewritten like the shard's own.
fn log_rewrite() -> &'static LogRewrite {
    &agora_replication::migrate::rewrite_log_entry
}

/// Checks the data directory's record format, migrating format 3 (card numbers are
/// exchanged with `cards` for references) and refusing any other. `Ok(true)`: a new store,
/// whose format is still to be recorded. Runs before the writer starts.
pub async fn check_store_format(store: &Store, cards: &dyn CardTokeniser) -> anyhow::Result<bool> {
    let from_3 = migrate::FROM_FORMAT.to_be_bytes();
    match store.meta(META_STORE_FORMAT)? {
        Some(b) if b == FORMAT_VERSION.to_be_bytes() => Ok(false),
        Some(b) if b == from_3 => {
            migrate_to_4(store, cards).await?;
            Ok(false)
        }
        Some(b) => anyhow::bail!(
            "this data directory was written with record format {b:?}; this build reads format {FORMAT_VERSION} (and migrates format 3): start on a fresh --data-dir"
        ),
        None if store.counts()?.0 > 0 => anyhow::bail!(
            "this data directory was written by an older build (record format 1); this build reads format {FORMAT_VERSION} and has no migration from it: start on a fresh --data-dir"
        ),
        None => Ok(true),
    }
}

/// Format 3 → 4: every stored card number is exchanged with the gateway for its reference,
/// then every row holding one is rewritten in one transaction that records format 4.
pub async fn migrate_to_4(store: &Store, cards: &dyn CardTokeniser) -> anyhow::Result<usize> {
    let found = migrate::legacy_cards(store, log_rewrite())?;
    tracing::info!(
        rows = found.rows,
        cards = found.numbers.len(),
        "record format 3 → 4: replacing stored card numbers with gateway tokens"
    );
    let total = found.numbers.len();
    let mut refs: BTreeMap<String, CardRef> = BTreeMap::new();
    for (k, number) in found.numbers.into_iter().enumerate() {
        let card = cards.tokenise_card(&number).await.context(
            "the payment gateway must tokenise the stored cards before this node can start",
        )?;
        tracing::info!(k = k + 1, of = total, last4 = %card.last4, "card tokenised");
        refs.insert(number, card);
    }
    let rows = migrate::migrate_cards(store, &refs, log_rewrite())?;
    tracing::info!(rows, "record format 4: no card number remains in the store");
    Ok(rows)
}
