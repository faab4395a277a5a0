//! A node's storage at start: the store (opened here, or the simulator's), its format and
//! shard count checked, the card vault or payment client, the catalog projection and the
//! group-commit writer.

use super::META_SHARD_COUNT;
use crate::cards::GatewayChoice;
use agora_actors::seams::RandomSource;
use agora_catalog::{CatalogProjection, IndexMode};
use agora_cluster_config::NodeSettings;
use agora_store::migrate::META_STORE_FORMAT;
use agora_store::{RelayFeed, StorageExecutor, Store, Writer};
use anyhow::Context;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// What `open` made ready.
pub(super) struct Storage {
    /// The node's redb store.
    pub store: Store,
    /// Its group-commit writer.
    pub writer: Writer,
    /// The catalog's projection (and search index), fed by the writer's commits.
    pub catalog: Arc<CatalogProjection>,
    /// Committed outbox rows, for the relay.
    pub relay_rx: UnboundedReceiver<RelayFeed>,
    /// The payment gateway: a real one's client, or the simulated one's card vault.
    pub payment_gateway: GatewayChoice,
    /// Whether the store was created by this start.
    pub new_store: bool,
    /// Where the payment gateway's webhooks reach this node, once the shop API listens.
    pub webhook_url: Arc<std::sync::OnceLock<String>>,
}

/// Opens the store (`store`, or the data dir's) and starts the writer on `executor`.
pub(super) async fn open(
    settings: &NodeSettings,
    secrets: &super::Secrets,
    cluster_secret: Option<&str>,
    (store, executor): (Option<Store>, StorageExecutor),
    rng: &dyn RandomSource,
) -> anyhow::Result<Storage> {
    let store = match store {
        Some(store) => store,
        None => {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!("cannot create data dir {}", settings.data_dir.display())
            })?;
            Store::open(&settings.data_dir.join("agora.redb")).context("cannot open the store")?
        }
    };
    // The simulator's inline storage means nothing may run beside its thread: the search
    // index is then brought up to date by the searches themselves.
    let index_mode = match executor {
        agora_store::StorageExecutor::Thread => IndexMode::Background,
        agora_store::StorageExecutor::Inline { .. } => IndexMode::OnRead,
    };
    let webhook_url = Arc::new(std::sync::OnceLock::new());
    let payment_gateway = match &settings.payment_gateway_url {
        Some(url) => {
            anyhow::ensure!(
                secrets.webhook_secret.is_some(),
                "a payment gateway URL needs AGORA_WEBHOOK_SECRET (the webhook signing secret)"
            );
            let Some(api_key) = secrets.gateway_api_key.as_deref() else {
                anyhow::bail!("a payment gateway URL needs AGORA_GATEWAY_API_KEY");
            };
            GatewayChoice::Http(Arc::new(crate::payment_http::HttpGateway::new(
                url,
                api_key,
                webhook_url.clone(),
            )?))
        }
        None => GatewayChoice::Sim(crate::cards::sim_vault(
            &store,
            rng,
            secrets.gateway_token_key.as_deref(),
            cluster_secret,
        )?),
    };
    let new_store =
        crate::cards::check_store_format(&store, payment_gateway.cards().as_ref()).await?;
    let catalog = Arc::new(CatalogProjection::load(&store, rng.next_u64(), index_mode)?);
    let (relay_tx, relay_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = Writer::start_on(store.clone(), relay_tx, vec![catalog.clone()], executor)?;
    if new_store {
        let format = agora_store::record::FORMAT_VERSION.to_be_bytes().to_vec();
        writer.put_meta(META_STORE_FORMAT, format).await?;
    }
    check_shard_count(&store, &writer, settings.shard_count).await?;
    Ok(Storage {
        store,
        writer,
        catalog,
        relay_rx,
        payment_gateway,
        new_store,
        webhook_url,
    })
}

async fn check_shard_count(store: &Store, writer: &Writer, shard_count: u32) -> anyhow::Result<()> {
    match store.meta(META_SHARD_COUNT)? {
        Some(b) => {
            let stored = u32::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .context("corrupt shard_count metadata")?,
            );
            anyhow::ensure!(
                stored == shard_count,
                "this data directory was created with shard_count = {stored}; start with --shards {stored} (the shard count cannot change)"
            );
        }
        None => {
            writer
                .put_meta(META_SHARD_COUNT, shard_count.to_be_bytes().to_vec())
                .await?
        }
    }
    Ok(())
}
