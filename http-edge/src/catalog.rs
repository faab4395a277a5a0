//! The product listing the edge reads: a projection kept by the node from committed product
//! and stock changes.

use serde::Serialize;

/// One product in the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Unit price in minor units.
    pub price_minor: u64,
    /// Currency.
    pub currency: String,
    /// Units available.
    pub available: u64,
    /// Creation time.
    pub created_at_ms: u64,
}

/// A listing query.
#[derive(Debug, Clone, Default)]
pub struct CatalogQuery {
    /// Words that must all appear in the name, description or category (case-insensitive).
    pub q: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Items to skip.
    pub offset: usize,
    /// Items to return.
    pub limit: usize,
}

/// The product listing.
pub trait Catalog: Send + Sync + 'static {
    /// Matching products in SKU order, and how many match in all.
    fn search(&self, query: &CatalogQuery) -> (Vec<CatalogEntry>, usize);
}
