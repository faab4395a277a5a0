//! The product listing projection: kept in memory from committed Product and StockItem
//! states, rebuilt from the store at start.

use crate::store::writer::CommitListener;
use crate::store::{Store, StoreError};
use agora_actors::host::EntityState;
use agora_actors::product::ProductState;
use agora_actors::{EntityKind, EntityRef};
use agora_http_edge::catalog::{Catalog, CatalogEntry, CatalogQuery};
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default, Clone)]
struct Row {
    product: Option<ProductState>,
    available: u64,
}

/// The listing.
#[derive(Default)]
pub struct CatalogProjection {
    rows: RwLock<BTreeMap<String, Row>>,
}

impl CatalogProjection {
    /// Builds the projection from the store.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let p = Self::default();
        let n = store.scan_entities(&[EntityKind::Product, EntityKind::StockItem], |e, rec| {
            p.apply(&e, &rec.state)
        })?;
        tracing::info!(records = n, "catalog projection loaded");
        Ok(p)
    }

    fn apply(&self, entity: &EntityRef, state: &EntityState) {
        let Ok(mut rows) = self.rows.write() else {
            return;
        };
        let row = rows.entry(entity.id.clone()).or_default();
        match state {
            EntityState::Product(p) => row.product = Some(p.clone()),
            EntityState::Stock(s) => row.available = s.available,
            _ => {}
        }
    }
}

impl CommitListener for CatalogProjection {
    fn wants(&self, kind: EntityKind) -> bool {
        matches!(kind, EntityKind::Product | EntityKind::StockItem)
    }

    fn committed(&self, entity: &EntityRef, state: &EntityState) {
        self.apply(entity, state);
    }
}

fn matches(words: &[String], text: &str) -> bool {
    let text = text.to_lowercase();
    words.iter().all(|w| text.contains(w.as_str()))
}

impl Catalog for CatalogProjection {
    fn search(&self, query: &CatalogQuery) -> (Vec<CatalogEntry>, usize) {
        let Ok(rows) = self.rows.read() else {
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
        for (sku, row) in rows.iter() {
            let Some(d) = row
                .product
                .as_ref()
                .and_then(|p| p.details.as_ref().map(|d| (p, d)))
            else {
                continue;
            };
            let (p, d) = d;
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
