//! The product listing projection: kept in memory from committed Product and StockItem
//! states, rebuilt from the store at start. In a cluster, each node also pulls the facts the
//! other nodes' shards produced (`since`), so every node lists the whole catalog; the lag is
//! bounded by the pull interval.
//!
//! Searches go through a full-text index (`crate::search`) behind the projection: each change
//! to a row that the index sees (a product's details, archiving, stock running out or coming
//! back) marks the SKU dirty, and the dirty SKUs are indexed in batches from the rows' state
//! at that moment (one commit and one reader reload per batch). In production a dedicated
//! thread takes each batch as soon as there is one; in the simulator the next search applies
//! the batch first, on the simulation's thread. The page's values (price, availability…)
//! come from the rows, so availability is always current.

pub mod search;

use crate::search::{IndexOp, MergeMode, SearchDoc, SearchError, SearchIndex};
use agora_actors::host::EntityState;
use agora_actors::product::ProductState;
use agora_actors::{EntityKind, EntityRef};
use agora_http_edge::catalog::{Catalog, CatalogEntry, CatalogError, CatalogPage, CatalogQuery};
use agora_store::writer::CommitListener;
use agora_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// What one entity tells the listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A product's state.
    Product(ProductState),
    /// A SKU's available units.
    Stock(u64),
    /// A SKU's review figures: average rating (0 to 5) and visible reviews.
    Rating {
        /// Average, rounded to hundredths.
        average: f64,
        /// Visible reviews.
        count: u64,
    },
}

/// The newest version a page of `newer` (version and size of each fact, oldest first) takes
/// within `max_bytes` (at least one fact), or `None` when all of them fit.
fn page_end(newer: &[(u64, usize)], max_bytes: usize) -> Option<u64> {
    let mut bytes = 0;
    for (i, (_, size)) in newer.iter().enumerate() {
        if i > 0 && bytes + size > max_bytes {
            return Some(newer[i - 1].0);
        }
        bytes += size;
    }
    None
}

impl Fact {
    /// About how many bytes the fact takes on the wire (its text, plus a fixed part).
    pub fn approx_bytes(&self) -> usize {
        const FIXED_BYTES: usize = 64;
        match self {
            Fact::Product(p) => {
                FIXED_BYTES
                    + p.details.as_ref().map_or(0, |d| {
                        d.name.len()
                            + d.description.len()
                            + d.category.len()
                            + d.attributes
                                .iter()
                                .map(|(k, v)| k.len() + v.len() + 8)
                                .sum::<usize>()
                    })
            }
            Fact::Stock(_) | Fact::Rating { .. } => FIXED_BYTES,
        }
    }

    /// The rating fact of a board's figures.
    fn rating(summary: agora_actors::review::RatingSummary) -> Self {
        Fact::Rating {
            average: summary.average(),
            count: summary.count,
        }
    }

    /// Which of a SKU's facts this is (one of each is kept per SKU).
    fn slot(&self) -> u8 {
        match self {
            Fact::Product(_) => 0,
            Fact::Stock(_) => 1,
            Fact::Rating { .. } => 2,
        }
    }
}

/// Facts changed since a version, for a peer's pull.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FactsSince {
    /// Changes each time the node starts: a new incarnation means "pull everything again".
    pub incarnation: u64,
    /// The newest version included.
    pub version: u64,
    /// The facts: SKU and what is known of it.
    pub facts: Vec<(String, Fact)>,
}

/// Why the projection could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the search index failed.
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// How the search index keeps up with the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// A dedicated thread indexes each batch of changes as soon as there is one
    /// (production: searches never wait for indexing).
    Background,
    /// The next search indexes the pending changes first, in its own thread, and merges
    /// run inline (the simulator: nothing may run beside the simulation's thread).
    OnRead,
}

#[derive(Default, Clone)]
struct Row {
    product: Option<ProductState>,
    available: u64,
    /// Average review rating (0 until reviewed).
    rating: f64,
    /// Visible reviews.
    review_count: u64,
}

impl Row {
    /// The row as the index sees it; `None`: not listed (not created, or archived).
    fn search_doc(&self, sku: &str) -> Option<SearchDoc> {
        let p = self.product.as_ref().filter(|p| p.is_active())?;
        let d = p.details.as_ref()?;
        Some(SearchDoc {
            sku: sku.to_string(),
            name: d.name.clone(),
            description: d.description.clone(),
            category: d.category.clone(),
            attributes: d.attributes.clone(),
            price_minor: d.price.amount_minor,
            in_stock: self.available > 0,
            rating: self.rating,
            created_at_ms: p.created_at_ms,
        })
    }

    fn entry(&self, sku: &str) -> Option<CatalogEntry> {
        let p = self.product.as_ref()?;
        let d = p.details.as_ref()?;
        Some(CatalogEntry {
            sku: sku.to_string(),
            name: d.name.clone(),
            description: d.description.clone(),
            category: d.category.clone(),
            attributes: d.attributes.clone(),
            price_minor: d.price.amount_minor,
            currency: d.price.currency.clone(),
            available: self.available,
            rating: self.rating,
            review_count: self.review_count,
            created_at_ms: p.created_at_ms,
        })
    }
}

#[derive(Default)]
struct Inner {
    rows: BTreeMap<String, Row>,
    /// Facts from this node's shards: (fact slot, SKU) → (version, fact).
    local: BTreeMap<(u8, String), (u64, Fact)>,
    version: u64,
}

/// SKUs whose index documents are out of date, with when each became so (production only).
#[derive(Default)]
struct Pending {
    dirty: BTreeMap<String, Option<Instant>>,
    closed: bool,
}

/// What the indexer thread waits on; it outlives the projection only until the thread sees
/// `closed`.
#[derive(Default)]
struct Signal {
    pending: Mutex<Pending>,
    wake: Condvar,
}

struct Shared {
    inner: RwLock<Inner>,
    index: SearchIndex,
    signal: Arc<Signal>,
    /// One batch at a time, in order.
    flushing: Mutex<()>,
    mode: IndexMode,
}

/// The listing.
pub struct CatalogProjection {
    shared: Arc<Shared>,
    incarnation: u64,
}

/// How long the indexer waits before retrying a batch that failed.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often an idle indexer checks that its projection still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A rating as the index keeps it: 0 to 5, 0 for anything not finite.
fn clamp_rating(rating: f64) -> f64 {
    if rating.is_finite() {
        rating.clamp(0.0, 5.0)
    } else {
        0.0
    }
}

fn unavailable(e: SearchError) -> CatalogError {
    CatalogError::Unavailable(e.to_string())
}

impl Shared {
    /// Marks `skus` as needing a new index document.
    fn mark_dirty(&self, skus: impl IntoIterator<Item = String>) {
        let Ok(mut p) = self.signal.pending.lock() else {
            return;
        };
        let now = (self.mode == IndexMode::Background).then(Instant::now);
        let before = p.dirty.len();
        for sku in skus {
            p.dirty.entry(sku).or_insert(now);
        }
        if p.dirty.len() > before && self.mode == IndexMode::Background {
            self.signal.wake.notify_one();
        }
    }

    /// Applies a fact to its row; whether the index must see the change.
    fn apply(rows: &mut BTreeMap<String, Row>, sku: &str, fact: &Fact) -> bool {
        let row = rows.entry(sku.to_string()).or_default();
        match fact {
            Fact::Product(p) => {
                if row.product.as_ref() == Some(p) {
                    return false;
                }
                row.product = Some(p.clone());
                true
            }
            Fact::Stock(a) => {
                let flips = (row.available > 0) != (*a > 0);
                row.available = *a;
                flips && row.product.is_some()
            }
            Fact::Rating { average, count } => {
                let average = clamp_rating(*average);
                row.review_count = *count;
                if row.rating == average {
                    return false;
                }
                row.rating = average;
                row.product.is_some()
            }
        }
    }

    /// Indexes every dirty SKU from its row's current state, as one batch.
    fn flush(&self, record_lag: bool) -> Result<(), SearchError> {
        let _one_at_a_time = self.flushing.lock().map_err(|_| SearchError::Poisoned)?;
        let batch = {
            let mut p = self
                .signal
                .pending
                .lock()
                .map_err(|_| SearchError::Poisoned)?;
            std::mem::take(&mut p.dirty)
        };
        if batch.is_empty() {
            return Ok(());
        }
        let ops: Vec<IndexOp> = {
            let inner = self.inner.read().map_err(|_| SearchError::Poisoned)?;
            batch
                .keys()
                .map(
                    |sku| match inner.rows.get(sku).and_then(|r| r.search_doc(sku)) {
                        Some(doc) => IndexOp::Upsert(doc),
                        None => IndexOp::Remove(sku.clone()),
                    },
                )
                .collect()
        };
        if let Err(e) = self.index.apply(&ops) {
            // Put the batch back (keeping the older times) for the next attempt.
            if let Ok(mut p) = self.signal.pending.lock() {
                for (sku, at) in batch {
                    let slot = p.dirty.entry(sku).or_insert(at);
                    if at.is_some() {
                        *slot = at;
                    }
                }
            }
            return Err(e);
        }
        metrics::histogram!("agora_search_batch_docs").record(ops.len() as f64);
        metrics::gauge!("agora_search_documents").set(self.index.len() as f64);
        if record_lag {
            for at in batch.values().flatten() {
                metrics::histogram!("agora_search_visibility_seconds")
                    .record(at.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }
}

/// The indexer thread: waits for dirty SKUs and indexes them in batches until the
/// projection is dropped.
fn run_indexer(signal: Arc<Signal>, shared: Weak<Shared>) {
    loop {
        {
            let Ok(mut p) = signal.pending.lock() else {
                return;
            };
            while p.dirty.is_empty() && !p.closed {
                if shared.strong_count() == 0 {
                    return;
                }
                p = match signal.wake.wait_timeout(p, IDLE_CHECK) {
                    Ok((p, _)) => p,
                    Err(_) => return,
                };
            }
            if p.closed {
                return;
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.flush(true) {
            tracing::error!(error = %e, "search indexing failed; retrying");
            metrics::counter!("agora_search_index_failures_total").increment(1);
            drop(shared);
            std::thread::sleep(RETRY_AFTER);
        }
    }
}

impl CatalogProjection {
    /// Builds the projection and its search index from the store; `incarnation` tells peers
    /// this is a new start.
    pub fn load(store: &Store, incarnation: u64, mode: IndexMode) -> Result<Self, LoadError> {
        let p = Self::empty(incarnation, mode)?;
        let kinds = [
            EntityKind::Product,
            EntityKind::StockItem,
            EntityKind::ReviewBoard,
        ];
        let n = store.scan_entities(&kinds, |e, rec| p.apply_local(&e, &rec.state))?;
        p.shared.flush(false)?;
        tracing::info!(
            records = n,
            indexed = p.shared.index.len(),
            "catalog projection and search index loaded"
        );
        p.start_indexer();
        Ok(p)
    }

    /// An empty projection (no store).
    pub fn empty(incarnation: u64, mode: IndexMode) -> Result<Self, SearchError> {
        let merge = match mode {
            IndexMode::Background => MergeMode::Background,
            IndexMode::OnRead => MergeMode::Inline,
        };
        let shared = Arc::new(Shared {
            inner: RwLock::new(Inner::default()),
            index: SearchIndex::new(merge)?,
            signal: Arc::new(Signal::default()),
            flushing: Mutex::new(()),
            mode,
        });
        Ok(Self {
            shared,
            incarnation,
        })
    }

    fn start_indexer(&self) {
        if self.shared.mode != IndexMode::Background {
            return;
        }
        let signal = self.shared.signal.clone();
        let weak = Arc::downgrade(&self.shared);
        if let Err(e) = std::thread::Builder::new()
            .name("agora-search-indexer".into())
            .spawn(move || run_indexer(signal, weak))
        {
            // Without the thread, searches index pending changes themselves.
            tracing::error!(error = %e, "cannot start the search indexer thread");
        }
    }

    /// Indexes the pending changes now, in this thread.
    pub fn flush(&self) -> Result<(), CatalogError> {
        self.shared.flush(false).map_err(unavailable)
    }

    fn apply_local(&self, entity: &EntityRef, state: &EntityState) {
        let fact = match state {
            EntityState::Product(p) => Fact::Product(p.clone()),
            EntityState::Stock(s) => Fact::Stock(s.available),
            EntityState::ReviewBoard(b) => Fact::rating(b.summary()),
            EntityState::LegacyReviewBoard(b) => Fact::rating(b.summary()),
            _ => return,
        };
        let dirty = {
            let Ok(mut inner) = self.shared.inner.write() else {
                return;
            };
            let dirty = Shared::apply(&mut inner.rows, &entity.id, &fact);
            inner.version += 1;
            let v = inner.version;
            inner
                .local
                .insert((fact.slot(), entity.id.clone()), (v, fact));
            dirty
        };
        if dirty {
            self.shared.mark_dirty([entity.id.clone()]);
        }
    }

    /// The facts from this node's shards newer than `version`, about `max_bytes` of them at
    /// most (at least one): the oldest ones, in key order. The answer's `version` is the
    /// newest one included, so a peer pulls the rest from there.
    pub fn since(&self, version: u64, max_bytes: usize) -> FactsSince {
        let Ok(inner) = self.shared.inner.read() else {
            return FactsSince {
                incarnation: self.incarnation,
                version,
                facts: Vec::new(),
            };
        };
        let mut newer: Vec<(u64, usize)> = inner
            .local
            .iter()
            .filter(|(_, (v, _))| *v > version)
            .map(|((_, sku), (v, f))| (*v, sku.len() + f.approx_bytes()))
            .collect();
        newer.sort_unstable();
        let upto = page_end(&newer, max_bytes).unwrap_or(inner.version);
        assert!(
            upto <= inner.version,
            "a page never runs ahead of the projection"
        );
        let facts = inner
            .local
            .iter()
            .filter(|(_, (v, _))| *v > version && *v <= upto)
            .map(|((_, sku), (_, f))| (sku.clone(), f.clone()))
            .collect();
        FactsSince {
            incarnation: self.incarnation,
            version: upto,
            facts,
        }
    }

    /// Applies facts pulled from a peer.
    pub fn apply_remote(&self, facts: &[(String, Fact)]) {
        let dirty: Vec<String> = {
            let Ok(mut inner) = self.shared.inner.write() else {
                return;
            };
            facts
                .iter()
                .filter(|(sku, f)| Shared::apply(&mut inner.rows, sku, f))
                .map(|(sku, _)| sku.clone())
                .collect()
        };
        self.shared.mark_dirty(dirty);
    }

    /// Sets a product's review figures as if a review board had reported them (tests).
    pub fn set_rating(&self, sku: &str, rating: f64, count: u64) {
        self.apply_remote(&[(
            sku.to_string(),
            Fact::Rating {
                average: rating,
                count,
            },
        )]);
    }
}

impl Drop for CatalogProjection {
    fn drop(&mut self) {
        if let Ok(mut p) = self.shared.signal.pending.lock() {
            p.closed = true;
        }
        self.shared.signal.wake.notify_all();
    }
}

impl CommitListener for CatalogProjection {
    fn wants(&self, kind: EntityKind) -> bool {
        matches!(
            kind,
            EntityKind::Product | EntityKind::StockItem | EntityKind::ReviewBoard
        )
    }

    fn committed(&self, entity: &EntityRef, state: &EntityState) {
        self.apply_local(entity, state);
    }
}

impl Catalog for CatalogProjection {
    fn search(&self, query: &CatalogQuery) -> Result<CatalogPage, CatalogError> {
        if self.shared.mode == IndexMode::OnRead {
            self.shared.flush(false).map_err(unavailable)?;
        }
        let hits = self.shared.index.search(query).map_err(unavailable)?;
        let inner = self
            .shared
            .inner
            .read()
            .map_err(|_| unavailable(SearchError::Poisoned))?;
        let items = hits
            .skus
            .iter()
            .filter_map(|sku| inner.rows.get(sku).and_then(|r| r.entry(sku)))
            .collect();
        Ok(CatalogPage {
            items,
            total: hits.total,
            categories: hits.categories,
        })
    }

    fn rating(&self, sku: &str) -> (f64, u64) {
        self.shared
            .inner
            .read()
            .ok()
            .and_then(|i| i.rows.get(sku).map(|r| (r.rating, r.review_count)))
            .unwrap_or((0.0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::money::Money;
    use agora_actors::product::ProductDetails;
    use agora_http_edge::catalog::SortOrder;

    fn product(name: &str, category: &str, price: u64, created: u64) -> ProductState {
        ProductState {
            details: Some(ProductDetails {
                name: name.into(),
                description: String::new(),
                category: category.into(),
                price: Money::shop(price),
                attributes: BTreeMap::new(),
            }),
            created_at_ms: created,
            updated_at_ms: created,
            archived_at_ms: None,
        }
    }

    fn product_ref(sku: &str) -> EntityRef {
        EntityRef::new(EntityKind::Product, sku)
    }

    fn stock(p: &CatalogProjection, sku: &str, available: u64) {
        let s = agora_actors::stock::StockState {
            available,
            ..Default::default()
        };
        p.committed(
            &EntityRef::new(EntityKind::StockItem, sku),
            &EntityState::Stock(s),
        );
    }

    fn query(q: &str) -> CatalogQuery {
        CatalogQuery {
            q: (!q.is_empty()).then(|| q.to_string()),
            limit: 50,
            ..CatalogQuery::default()
        }
    }

    fn skus(page: &CatalogPage) -> Vec<&str> {
        page.items.iter().map(|e| e.sku.as_str()).collect()
    }

    #[test]
    fn committed_changes_reach_search_on_read() {
        let p = CatalogProjection::empty(1, IndexMode::OnRead).unwrap();
        let hp = product("Wireless Headphones", "audio", 5_000, 1);
        p.committed(&product_ref("HP-1"), &EntityState::Product(hp.clone()));
        p.committed(
            &product_ref("KET-1"),
            &EntityState::Product(product("Kettle", "kitchen", 2_000, 2)),
        );
        let page = p.search(&query("hedphones")).unwrap();
        assert_eq!(skus(&page), vec!["HP-1"]);
        assert_eq!(page.items[0].available, 0);

        // Stock: the listing shows it at once; the in-stock filter follows.
        stock(&p, "HP-1", 3);
        let in_stock = CatalogQuery {
            in_stock: true,
            ..query("")
        };
        assert_eq!(skus(&p.search(&in_stock).unwrap()), vec!["HP-1"]);
        stock(&p, "HP-1", 2);
        assert_eq!(
            p.search(&query("headphones")).unwrap().items[0].available,
            2
        );

        // An update: new words, new price.
        let mut renamed = hp.clone();
        if let Some(d) = renamed.details.as_mut() {
            d.name = "Studio Monitor Headphones".into();
            d.price = Money::shop(9_000);
        }
        p.committed(&product_ref("HP-1"), &EntityState::Product(renamed.clone()));
        let page = p.search(&query("studio")).unwrap();
        assert_eq!(page.items[0].price_minor, 9_000);
        let cheap = CatalogQuery {
            max_price: Some(5_000),
            ..query("")
        };
        assert_eq!(skus(&p.search(&cheap).unwrap()), vec!["KET-1"]);

        // Archived: gone from search and listings, facets included.
        renamed.archived_at_ms = Some(10);
        p.committed(&product_ref("HP-1"), &EntityState::Product(renamed));
        let page = p.search(&query("")).unwrap();
        assert_eq!(skus(&page), vec!["KET-1"]);
        assert_eq!(page.total, 1);
        assert_eq!(page.categories.len(), 1);
        assert!(p.search(&query("studio")).unwrap().items.is_empty());
    }

    #[test]
    fn stock_changes_that_keep_availability_do_not_reindex() {
        let p = CatalogProjection::empty(1, IndexMode::OnRead).unwrap();
        p.committed(
            &product_ref("A"),
            &EntityState::Product(product("Apple", "fruit", 100, 1)),
        );
        p.flush().unwrap();
        stock(&p, "A", 5);
        assert_eq!(p.shared.signal.pending.lock().unwrap().dirty.len(), 1);
        p.flush().unwrap();
        stock(&p, "A", 4);
        stock(&p, "A", 9);
        assert!(p.shared.signal.pending.lock().unwrap().dirty.is_empty());
        stock(&p, "A", 0);
        assert_eq!(p.shared.signal.pending.lock().unwrap().dirty.len(), 1);
    }

    #[test]
    fn remote_facts_and_ratings_are_indexed() {
        let p = CatalogProjection::empty(1, IndexMode::OnRead).unwrap();
        p.apply_remote(&[
            (
                "R-1".into(),
                Fact::Product(product("Red Kite", "toys", 500, 1)),
            ),
            (
                "R-2".into(),
                Fact::Product(product("Blue Kite", "toys", 700, 2)),
            ),
            ("R-1".into(), Fact::Stock(4)),
        ]);
        p.set_rating("R-2", 4.5, 2);
        let by_rating = CatalogQuery {
            sort: SortOrder::Rating,
            ..query("kite")
        };
        let page = p.search(&by_rating).unwrap();
        assert_eq!(skus(&page), vec!["R-2", "R-1"]);
        assert_eq!(page.items[0].rating, 4.5);
        assert_eq!(p.rating("R-2"), (4.5, 2));
        assert_eq!(page.items[0].review_count, 2);
        let rated = CatalogQuery {
            min_rating: Some(4.0),
            ..query("")
        };
        assert_eq!(skus(&p.search(&rated).unwrap()), vec!["R-2"]);
        // A pull that repeats what is known changes nothing.
        p.apply_remote(&[(
            "R-1".into(),
            Fact::Product(product("Red Kite", "toys", 500, 1)),
        )]);
        assert!(p.shared.signal.pending.lock().unwrap().dirty.is_empty());
    }

    #[test]
    fn a_pull_comes_in_pages_that_end_at_a_version_and_miss_nothing() {
        let p = CatalogProjection::empty(1, IndexMode::OnRead).unwrap();
        for i in 0..10 {
            let sku = format!("PG-{i}");
            p.committed(
                &product_ref(&sku),
                &EntityState::Product(product("Paged Thing", "toys", 100 + i, 1)),
            );
        }
        let one = Fact::Product(product("Paged Thing", "toys", 100, 1)).approx_bytes() + 4;
        // Three products' worth per page: four pages, each ending at its last version.
        let (mut version, mut got, mut pages) = (0, Vec::new(), 0);
        loop {
            let page = p.since(version, 3 * one);
            if page.facts.is_empty() {
                break;
            }
            assert!(
                page.facts.len() <= 3,
                "{} facts in a page",
                page.facts.len()
            );
            assert!(page.version > version, "a page moves the version on");
            version = page.version;
            got.extend(page.facts.into_iter().map(|(sku, _)| sku));
            pages += 1;
            // A change made between pages comes in a later page.
            if pages == 1 {
                p.committed(
                    &product_ref("PG-0"),
                    &EntityState::Product(product("Paged Thing", "toys", 999, 1)),
                );
            }
        }
        assert_eq!(pages, 4);
        // Within a page, facts come in key order: the last page is PG-0 (changed) and PG-9.
        let mut expected: Vec<String> = (0..9).map(|i| format!("PG-{i}")).collect();
        expected.extend(["PG-0".to_string(), "PG-9".to_string()]);
        assert_eq!(
            got, expected,
            "every fact once, oldest first; the changed one again"
        );
        // A fact larger than the budget still comes, alone.
        assert_eq!(p.since(0, 1).facts.len(), 1);
    }

    #[test]
    fn committed_review_boards_set_the_rating_filter_and_sort() {
        use agora_actors::review::ReviewBoardState;
        let p = CatalogProjection::empty(1, IndexMode::OnRead).unwrap();
        for (sku, name) in [("RV-1", "Tea Pot"), ("RV-2", "Tea Cup")] {
            p.committed(
                &product_ref(sku),
                &EntityState::Product(product(name, "kitchen", 100, 1)),
            );
        }
        // Ratings 5, 4 and 2.
        let mut board = ReviewBoardState {
            histogram: [0, 1, 0, 1, 1],
            ..ReviewBoardState::default()
        };
        let board_ref = EntityRef::new(EntityKind::ReviewBoard, "RV-2");
        p.committed(&board_ref, &EntityState::ReviewBoard(board.clone()));
        assert_eq!(p.rating("RV-2"), (3.67, 3));
        assert_eq!(p.rating("RV-1"), (0.0, 0));
        let rated = |min| CatalogQuery {
            min_rating: Some(min),
            ..query("")
        };
        assert_eq!(skus(&p.search(&rated(3.5)).unwrap()), vec!["RV-2"]);
        assert!(skus(&p.search(&rated(4.0)).unwrap()).is_empty());
        let by_rating = CatalogQuery {
            sort: SortOrder::Rating,
            ..query("tea")
        };
        assert_eq!(skus(&p.search(&by_rating).unwrap()), vec!["RV-2", "RV-1"]);

        // Hiding the 2-star review raises the average; the index follows.
        board.histogram[1] = 0;
        p.committed(&board_ref, &EntityState::ReviewBoard(board));
        assert_eq!(p.rating("RV-2"), (4.5, 2));
        assert_eq!(skus(&p.search(&rated(4.0)).unwrap()), vec!["RV-2"]);
        let page = p.search(&by_rating).unwrap();
        assert_eq!((page.items[0].rating, page.items[0].review_count), (4.5, 2));

        // Peers pull the figures with the other facts.
        let facts = p.since(0, usize::MAX).facts;
        assert!(
            facts.iter().any(|(sku, f)| sku == "RV-2"
                && *f
                    == Fact::Rating {
                        average: 4.5,
                        count: 2
                    }),
            "{facts:?}"
        );

        // A board stored before review slots (reviews inside) gives its figures too.
        let mut old = agora_actors::review::LegacyBoardState::default();
        for (author, rating, hidden) in [("a", 4u8, false), ("b", 1, true), ("c", 5, false)] {
            let review = agora_actors::review::Review {
                id: old.next_id + 1,
                author_name: "n".into(),
                rating,
                title: "t".into(),
                body: String::new(),
                created_at_ms: 1,
                updated_at_ms: 1,
                hidden,
            };
            old.next_id += 1;
            old.reviews.insert(author.into(), review);
        }
        let old_ref = EntityRef::new(EntityKind::ReviewBoard, "RV-1");
        p.committed(&old_ref, &EntityState::LegacyReviewBoard(old));
        assert_eq!(p.rating("RV-1"), (4.5, 2));
    }

    #[test]
    fn the_background_indexer_catches_up_and_stops_with_the_projection() {
        let p = CatalogProjection::empty(1, IndexMode::Background).unwrap();
        p.start_indexer();
        p.committed(
            &product_ref("BG-1"),
            &EntityState::Product(product("Garden Spade", "garden", 900, 1)),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Searches do not index in the background mode: only the thread does.
            if p.search(&query("spade")).unwrap().total == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the indexer never caught up");
            std::thread::sleep(Duration::from_millis(1));
        }
        let weak = Arc::downgrade(&p.shared);
        drop(p);
        let deadline = Instant::now() + Duration::from_secs(10);
        while weak.strong_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "the indexer kept the projection alive"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
