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

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::host::EntityState;
    use agora_actors::message::{Body, Destination, ExternalCall};
    use agora_actors::money::Money;
    use agora_actors::order::{Address, OrderLine, OrderState, Placement};
    use agora_actors::payment::{check_report, ChargeReport, Method, PaymentState, PaymentStatus};
    use agora_actors::{EntityKind, EntityRef, OutboxMessage};
    use agora_store::record::{encode, EntityRecord, OutboxRecord};
    use agora_store::{keys, ENTITIES, OUTBOX};

    const NUMBER: &str = "4000000000009995";

    fn legacy() -> Method {
        Method::LegacyCardNumber {
            number: NUMBER.into(),
        }
    }

    fn record(state: EntityState) -> Vec<u8> {
        let r = EntityRecord {
            format: migrate::FROM_FORMAT,
            seq: 3,
            epoch: 1,
            written_at_ms: 1_700_000_000_000,
            state,
        };
        encode(&r).expect("encodes")
    }

    /// A format-3 store holding the card number in an order, its payment and a charge call.
    fn format_3_store(dir: &std::path::Path) -> (Store, Vec<u8>, Vec<u8>) {
        let store = Store::open(&dir.join("agora.redb")).expect("store");
        let placement = Placement {
            customer: "u-1".into(),
            lines: vec![OrderLine {
                sku: "SKU-1".into(),
                quantity: 1,
                unit_price_minor: 29_800,
            }],
            method: legacy(),
            address: Address {
                name: "Asha Rao".into(),
                line1: "12 MG Road".into(),
                city: "Bengaluru".into(),
                postal_code: "560001".into(),
                country: "IN".into(),
            },
            request_hash: "h".into(),
            placed_at_ms: 1,
            shipping: Default::default(),
        };
        let order = EntityState::Order(OrderState {
            placement: Some(placement),
            ..OrderState::default()
        });
        let payment = EntityState::Payment(PaymentState {
            status: PaymentStatus::Processing,
            method: Some(legacy()),
            amount_minor: 29_800,
            ..PaymentState::default()
        });
        let order_key = keys::entity_key(0, &EntityRef::new(EntityKind::Order, "o-1"));
        let payment_key = keys::entity_key(0, &EntityRef::new(EntityKind::Payment, "o-1"));
        let charge = OutboxRecord {
            format: migrate::FROM_FORMAT,
            epoch: 1,
            message: OutboxMessage {
                id: "payment:o-1#1.0".into(),
                from: EntityRef::new(EntityKind::Payment, "o-1"),
                to: Destination::External,
                deliver_at_ms: 0,
                topic: "CHARGE".into(),
                body: Body::External(ExternalCall::Charge {
                    key: "o-1:charge".into(),
                    order_id: "o-1".into(),
                    method: legacy(),
                    amount: Money::shop(29_800),
                }),
            },
        };
        let tx = store.db().begin_write().expect("tx");
        {
            let mut t = tx.open_table(ENTITIES).expect("entities");
            t.insert(order_key.as_slice(), record(order).as_slice())
                .expect("order");
            t.insert(payment_key.as_slice(), record(payment).as_slice())
                .expect("payment");
            let mut o = tx.open_table(OUTBOX).expect("outbox");
            let row = encode(&charge).expect("encodes");
            o.insert(b"outbox-key-1".as_slice(), row.as_slice())
                .expect("charge");
        }
        tx.commit().expect("commit");
        store
            .put_meta_now(META_STORE_FORMAT, &migrate::FROM_FORMAT.to_be_bytes())
            .expect("format 3");
        (store, order_key, payment_key)
    }

    #[tokio::test]
    async fn a_format_3_store_is_migrated_to_tokens_and_keeps_no_card_number() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, order_key, payment_key) = format_3_store(dir.path());
        let vault = CardVault::new(agora_actors::card::TEST_CARD_KEY).expect("vault");
        let expected = vault.tokenise(NUMBER).expect("a card");

        assert!(!check_store_format(&store, &vault).await.expect("migrated"));
        assert_eq!(
            store.meta(META_STORE_FORMAT).expect("meta"),
            Some(FORMAT_VERSION.to_be_bytes().to_vec())
        );
        let Some(EntityState::Order(o)) = store.entity(&order_key).expect("read").map(|r| r.state)
        else {
            panic!("the order decodes");
        };
        let method = o.placement.expect("placed").method;
        assert_eq!(method, Method::Card(expected.clone()));
        let Some(EntityState::Payment(p)) =
            store.entity(&payment_key).expect("read").map(|r| r.state)
        else {
            panic!("the payment decodes");
        };
        assert_eq!(p.method, Some(Method::Card(expected.clone())));
        // The migrated payment still takes its charge's success report.
        let report = ChargeReport::of("o-1", &method, &Money::shop(29_800));
        assert_eq!(check_report(&p, "o-1", &report), Ok(()));
        let outbox = store.outbox_rows().expect("outbox");
        let Body::External(ExternalCall::Charge { method, .. }) = &outbox[0].1.message.body else {
            panic!("the charge decodes");
        };
        assert_eq!(method, &Method::Card(expected));
        // No number remains, anywhere in the file; a second start changes nothing.
        let left = migrate::legacy_cards(&store, log_rewrite()).expect("scan");
        assert_eq!(left, migrate::LegacyCards::default());
        assert!(!check_store_format(&store, &vault).await.expect("format 4"));
        drop(store);
        let bytes = std::fs::read(dir.path().join("agora.redb")).expect("read the file");
        assert!(!bytes.windows(NUMBER.len()).any(|w| w == NUMBER.as_bytes()));
    }
}
