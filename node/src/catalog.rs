//! The product listing projection: kept in memory from committed Product and StockItem
//! states, rebuilt from the store at start. In a cluster, each node also pulls the facts the
//! other nodes' shards produced (`since`), so every node lists the whole catalog; the lag is
//! bounded by the pull interval.

use crate::store::writer::CommitListener;
use crate::store::{Store, StoreError};
use agora_actors::host::EntityState;
use agora_actors::product::ProductState;
use agora_actors::{EntityKind, EntityRef};
use agora_http_edge::catalog::{Catalog, CatalogEntry, CatalogQuery};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// What one entity tells the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    /// A product's state.
    Product(ProductState),
    /// A SKU's available units.
    Stock(u64),
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

#[derive(Default, Clone)]
struct Row {
    product: Option<ProductState>,
    available: u64,
}

#[derive(Default)]
struct Inner {
    rows: BTreeMap<String, Row>,
    /// Facts from this node's shards: (is stock, SKU) → (version, fact).
    local: BTreeMap<(bool, String), (u64, Fact)>,
    version: u64,
}

/// The listing.
pub struct CatalogProjection {
    inner: RwLock<Inner>,
    incarnation: u64,
}

impl CatalogProjection {
    /// Builds the projection from the store; `incarnation` tells peers this is a new start.
    pub fn load(store: &Store, incarnation: u64) -> Result<Self, StoreError> {
        let p = Self {
            inner: RwLock::new(Inner::default()),
            incarnation,
        };
        let n = store.scan_entities(&[EntityKind::Product, EntityKind::StockItem], |e, rec| {
            p.apply_local(&e, &rec.state)
        })?;
        tracing::info!(records = n, "catalog projection loaded");
        Ok(p)
    }

    fn apply(rows: &mut BTreeMap<String, Row>, sku: &str, fact: &Fact) {
        let row = rows.entry(sku.to_string()).or_default();
        match fact {
            Fact::Product(p) => row.product = Some(p.clone()),
            Fact::Stock(a) => row.available = *a,
        }
    }

    fn apply_local(&self, entity: &EntityRef, state: &EntityState) {
        let fact = match state {
            EntityState::Product(p) => Fact::Product(p.clone()),
            EntityState::Stock(s) => Fact::Stock(s.available),
            _ => return,
        };
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        Self::apply(&mut inner.rows, &entity.id, &fact);
        inner.version += 1;
        let v = inner.version;
        inner.local.insert(
            (matches!(fact, Fact::Stock(_)), entity.id.clone()),
            (v, fact),
        );
    }

    /// The facts from this node's shards newer than `version`.
    pub fn since(&self, version: u64) -> FactsSince {
        let Ok(inner) = self.inner.read() else {
            return FactsSince {
                incarnation: self.incarnation,
                version,
                facts: Vec::new(),
            };
        };
        let facts = inner
            .local
            .iter()
            .filter(|(_, (v, _))| *v > version)
            .map(|((_, sku), (_, f))| (sku.clone(), f.clone()))
            .collect();
        FactsSince {
            incarnation: self.incarnation,
            version: inner.version,
            facts,
        }
    }

    /// Applies facts pulled from a peer.
    pub fn apply_remote(&self, facts: &[(String, Fact)]) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        for (sku, f) in facts {
            Self::apply(&mut inner.rows, sku, f);
        }
    }
}

impl CommitListener for CatalogProjection {
    fn wants(&self, kind: EntityKind) -> bool {
        matches!(kind, EntityKind::Product | EntityKind::StockItem)
    }

    fn committed(&self, entity: &EntityRef, state: &EntityState) {
        self.apply_local(entity, state);
    }
}

fn matches(words: &[String], text: &str) -> bool {
    let text = text.to_lowercase();
    words.iter().all(|w| text.contains(w.as_str()))
}

impl Catalog for CatalogProjection {
    fn search(&self, query: &CatalogQuery) -> (Vec<CatalogEntry>, usize) {
        let Ok(inner) = self.inner.read() else {
            return (Vec::new(), 0);
        };
        let words: Vec<String> = query
            .q
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let mut total = 0;
        let mut page = Vec::new();
        for (sku, row) in inner.rows.iter() {
            let Some((p, d)) = row
                .product
                .as_ref()
                .and_then(|p| p.details.as_ref().map(|d| (p, d)))
            else {
                continue;
            };
            if query.category.as_deref().is_some_and(|c| c != d.category) {
                continue;
            }
            if !words.is_empty()
                && !matches(
                    &words,
                    &format!("{} {} {} {}", sku, d.name, d.description, d.category),
                )
            {
                continue;
            }
            if total >= query.offset && page.len() < query.limit {
                page.push(CatalogEntry {
                    sku: sku.clone(),
                    name: d.name.clone(),
                    description: d.description.clone(),
                    category: d.category.clone(),
                    price_minor: d.price.amount_minor,
                    currency: d.price.currency.clone(),
                    available: row.available,
                    created_at_ms: p.created_at_ms,
                });
            }
            total += 1;
        }
        (page, total)
    }
}
