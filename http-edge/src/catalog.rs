//! The product listing the edge reads: a projection kept by the node from committed product
//! and stock changes, searched through a full-text index.

use serde::Serialize;
use std::collections::BTreeMap;

/// One product in the listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
    /// Unit price in minor units.
    pub price_minor: u64,
    /// Currency.
    pub currency: String,
    /// Units available.
    pub available: u64,
    /// Average review rating, 0 to 5 (0 until reviewed).
    pub rating: f64,
    /// Visible reviews the average is over.
    pub review_count: u64,
    /// Creation time.
    pub created_at_ms: u64,
}

/// The order of a listing. Ties are broken by SKU, so pages never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Best match first (SKU order when there are no words to match).
    #[default]
    Relevance,
    /// Cheapest first.
    PriceAsc,
    /// Dearest first.
    PriceDesc,
    /// Best rated first.
    Rating,
    /// Most recently created first.
    Newest,
}

impl SortOrder {
    /// Every order, as named in the API.
    pub const ALL: [SortOrder; 5] = [
        SortOrder::Relevance,
        SortOrder::PriceAsc,
        SortOrder::PriceDesc,
        SortOrder::Rating,
        SortOrder::Newest,
    ];

    /// The API name (`relevance`, `price_asc`, `price_desc`, `rating`, `newest`).
    pub fn name(self) -> &'static str {
        match self {
            SortOrder::Relevance => "relevance",
            SortOrder::PriceAsc => "price_asc",
            SortOrder::PriceDesc => "price_desc",
            SortOrder::Rating => "rating",
            SortOrder::Newest => "newest",
        }
    }

    /// The order named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// A listing query. Every filter present must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogQuery {
    /// Words to find in the name, description, category, attributes or SKU; every word must
    /// match, exactly, as a prefix or with a typo or two.
    pub q: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Lowest unit price in minor units (inclusive).
    pub min_price: Option<u64>,
    /// Highest unit price in minor units (inclusive).
    pub max_price: Option<u64>,
    /// Only products with units available.
    pub in_stock: bool,
    /// Lowest average rating (inclusive).
    pub min_rating: Option<f64>,
    /// Order of the results.
    pub sort: SortOrder,
    /// Items to skip.
    pub offset: usize,
    /// Items to return.
    pub limit: usize,
}

/// How many results fall on one value of a facet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacetCount {
    /// The value (a category).
    pub value: String,
    /// Matching products with that value.
    pub count: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogPage {
    /// The page's products, in the query's order.
    pub items: Vec<CatalogEntry>,
    /// Products matching in all.
    pub total: usize,
    /// Matching products per category (over every match, not only this page), most first,
    /// then by name.
    pub categories: Vec<FacetCount>,
}

/// Why the listing could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogError {
    /// The search index failed; a retry may succeed.
    #[error("the search index is unavailable: {0}")]
    Unavailable(String),
}

/// The product listing.
pub trait Catalog: Send + Sync + 'static {
    /// One page of the products matching `query`, with the total and the category facets.
    fn search(&self, query: &CatalogQuery) -> Result<CatalogPage, CatalogError>;

    /// The average review rating of `sku` and the number of visible reviews (0 and 0 when it
    /// has none or is unknown).
    fn rating(&self, _sku: &str) -> (f64, u64) {
        (0.0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::SortOrder;

    #[test]
    fn sort_names_round_trip() {
        for o in SortOrder::ALL {
            assert_eq!(SortOrder::parse(o.name()), Some(o));
        }
        assert_eq!(SortOrder::parse("PRICE_ASC"), None);
        assert_eq!(SortOrder::parse(""), None);
    }
}
