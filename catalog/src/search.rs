//! The catalog's full-text index: tantivy, in RAM, one per node, holding one document per
//! sold product. The catalog projection feeds it (`apply`, in batches: one commit and one
//! reader reload per batch) and asks it for a page of SKUs (`search`); the listing's values
//! come from the projection's rows.
//!
//! Matching: the query's words are tokenized like the documents (split on non-alphanumerics,
//! lowercased, accents folded). Every word must match the name, description or keywords
//! (category, attribute names and values, SKU): exactly (BM25, boosted), as a prefix (words of
//! three letters or more) or within an edit distance (1 for words of 3 to 5 letters, 2 for
//! longer ones; a transposition counts as one edit). A query equal to a product's SKU (any
//! case) puts that product first.
//!
//! Filters (category, price range, in stock, minimum rating) are exact, on indexed fast
//! fields. Sorting reads the fast fields of every match, keeps the best `offset + limit` per
//! segment, and breaks ties by SKU, so pages are stable and never overlap. The category
//! counts cover every match, before pagination.

use agora_http_edge::catalog::{CatalogQuery, FacetCount, SortOrder};
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;
use std::sync::Mutex;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::merge_policy::{LogMergePolicy, NoMergePolicy};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal, SegmentReader,
    TantivyDocument, Term,
};

/// Name of the analyzer of the text fields.
const TOKENIZER: &str = "agora_text";
/// Words of a query that count; later ones are ignored (they could only narrow the match).
pub const MAX_QUERY_TERMS: usize = 16;
/// Memory the index writer may buffer before it flushes a segment (tantivy's minimum).
const WRITER_MEMORY: usize = 15_000_000;
/// With inline merges, the segments allowed before they are merged into one.
const MAX_SEGMENTS: usize = 8;
/// Score a query equal to a product's SKU adds to that product.
const SKU_MATCH_SCORE: Score = 1000.0;

/// Boosts of one text field: an exact word (multiplies BM25), a prefix, a fuzzy match.
#[derive(Clone, Copy)]
struct Boosts {
    exact: Score,
    prefix: Score,
    fuzzy: Score,
}

const NAME_BOOSTS: Boosts = Boosts {
    exact: 3.0,
    prefix: 1.5,
    fuzzy: 1.0,
};
const KEYWORD_BOOSTS: Boosts = Boosts {
    exact: 1.5,
    prefix: 0.75,
    fuzzy: 0.5,
};
const DESCRIPTION_BOOSTS: Boosts = Boosts {
    exact: 1.0,
    prefix: 0.4,
    fuzzy: 0.3,
};

/// What the index holds of one product.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDoc {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Attributes (names and values are searchable).
    pub attributes: BTreeMap<String, String>,
    /// Unit price in minor units.
    pub price_minor: u64,
    /// Whether units are available.
    pub in_stock: bool,
    /// Average rating, 0 to 5.
    pub rating: f64,
    /// Creation time (ms since epoch).
    pub created_at_ms: u64,
}

/// One change to the index.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexOp {
    /// Add the product or replace its document.
    Upsert(SearchDoc),
    /// Remove the product's document (archived, or gone).
    Remove(String),
}

impl IndexOp {
    /// The SKU the change is about.
    pub fn sku(&self) -> &str {
        match self {
            IndexOp::Upsert(d) => &d.sku,
            IndexOp::Remove(s) => s,
        }
    }
}

/// A page of matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchHits {
    /// The page's SKUs, in order.
    pub skus: Vec<String>,
    /// Matches in all.
    pub total: usize,
    /// Matches per category, most first, then by name.
    pub categories: Vec<FacetCount>,
}

/// A failure of the index.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// tantivy failed.
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// A lock was poisoned by a panic elsewhere.
    #[error("search index lock poisoned")]
    Poisoned,
}

/// How segments are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMode {
    /// tantivy's log merge policy, on its merge thread (production).
    Background,
    /// No background merges; `apply` merges in place when there are too many segments, so
    /// every piece of work happens inside the caller's call (the simulator: nothing runs
    /// concurrently with the simulation's thread).
    Inline,
}

#[derive(Clone, Copy)]
struct Fields {
    sku: Field,
    sku_key: Field,
    name: Field,
    description: Field,
    keywords: Field,
    category: Field,
    price: Field,
    in_stock: Field,
    rating: Field,
    created_at: Field,
}

/// The index.
pub struct SearchIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    merge: MergeMode,
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        sku: b.add_text_field("sku", STRING | FAST),
        sku_key: b.add_text_field("sku_key", STRING),
        name: b.add_text_field("name", text.clone()),
        description: b.add_text_field("description", text.clone()),
        keywords: b.add_text_field("keywords", text),
        category: b.add_text_field("category", STRING | FAST),
        price: b.add_u64_field("price", INDEXED | FAST),
        in_stock: b.add_u64_field("in_stock", INDEXED | FAST),
        rating: b.add_f64_field("rating", INDEXED | FAST),
        created_at: b.add_u64_field("created_at", FAST),
    };
    (b.build(), fields)
}

/// The words of `text` as the index sees them.
fn terms_of(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out: Vec<String> = Vec::new();
    stream.process(&mut |t| {
        if !out.contains(&t.text) {
            out.push(t.text.clone());
        }
    });
    out
}

/// The edit distance a word may be matched within.
fn distance_for(term: &str) -> u8 {
    match term.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

impl SearchIndex {
    /// An empty index.
    pub fn new(merge: MergeMode) -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        index.tokenizers().register(TOKENIZER, analyzer());
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .num_worker_threads(1)
            .num_merge_threads(1)
            .memory_budget_per_thread(WRITER_MEMORY)
            .build();
        let writer: IndexWriter = index.writer_with_options(options)?;
        match merge {
            MergeMode::Background => writer.set_merge_policy(Box::new(LogMergePolicy::default())),
            MergeMode::Inline => writer.set_merge_policy(Box::new(NoMergePolicy)),
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
            merge,
        })
    }

    fn document(&self, d: &SearchDoc) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.sku, &d.sku);
        doc.add_text(f.sku_key, d.sku.to_lowercase());
        doc.add_text(f.name, &d.name);
        doc.add_text(f.description, &d.description);
        doc.add_text(f.keywords, &d.category);
        doc.add_text(f.keywords, &d.sku);
        for (k, v) in &d.attributes {
            doc.add_text(f.keywords, k);
            doc.add_text(f.keywords, v);
        }
        doc.add_text(f.category, &d.category);
        doc.add_u64(f.price, d.price_minor);
        doc.add_u64(f.in_stock, u64::from(d.in_stock));
        doc.add_f64(f.rating, if d.rating.is_finite() { d.rating } else { 0.0 });
        doc.add_u64(f.created_at, d.created_at_ms);
        doc
    }

    /// Applies a batch of changes: one commit, then the reader is reloaded, so the batch
    /// becomes visible at once. Later changes to a SKU win over earlier ones.
    pub fn apply(&self, ops: &[IndexOp]) -> Result<(), SearchError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().map_err(|_| SearchError::Poisoned)?;
        let result = self.apply_locked(&mut writer, ops);
        if result.is_err() {
            // Nothing of a failed batch may linger in the writer; the caller retries.
            let _ = writer.rollback();
        }
        result
    }

    fn apply_locked(&self, writer: &mut IndexWriter, ops: &[IndexOp]) -> Result<(), SearchError> {
        for op in ops {
            writer.delete_term(Term::from_field_text(self.fields.sku, op.sku()));
            if let IndexOp::Upsert(d) = op {
                writer.add_document(self.document(d))?;
            }
        }
        writer.commit()?;
        if self.merge == MergeMode::Inline {
            let segments = self.index.searchable_segment_ids()?;
            if segments.len() > MAX_SEGMENTS {
                writer.merge(&segments).wait()?;
            }
        }
        self.reader.reload()?;
        Ok(())
    }

    /// Products in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index holds no product.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn text_query(&self, q: &str) -> Option<Box<dyn Query>> {
        let f = self.fields;
        let terms = terms_of(q);
        if terms.is_empty() {
            return None;
        }
        let mut words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in terms.iter().take(MAX_QUERY_TERMS) {
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boosts) in [
                (f.name, NAME_BOOSTS),
                (f.keywords, KEYWORD_BOOSTS),
                (f.description, DESCRIPTION_BOOSTS),
            ] {
                let term = Term::from_field_text(field, t);
                any.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                        boosts.exact,
                    )),
                ));
                if t.chars().count() >= 3 {
                    any.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(FuzzyTermQuery::new_prefix(term.clone(), 0, true)),
                            boosts.prefix,
                        )),
                    ));
                }
                let d = distance_for(t);
                if d > 0 {
                    any.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(
                            Box::new(FuzzyTermQuery::new(term, d, true)),
                            boosts.fuzzy,
                        )),
                    ));
                }
            }
            words.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        let key = q.trim().to_lowercase();
        if !key.is_empty() {
            words.push((
                Occur::Should,
                Box::new(ConstScoreQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.sku_key, &key),
                        IndexRecordOption::Basic,
                    )),
                    SKU_MATCH_SCORE,
                )),
            ));
        }
        Some(Box::new(BooleanQuery::new(words)))
    }

    fn query(&self, q: &CatalogQuery) -> (Box<dyn Query>, bool) {
        let f = self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let text = q.q.as_deref().and_then(|s| self.text_query(s));
        let scored = text.is_some() && q.sort == SortOrder::Relevance;
        if let Some(t) = text {
            must.push((Occur::Must, t));
        }
        let mut filter = |query: Box<dyn Query>| {
            must.push((Occur::Must, Box::new(ConstScoreQuery::new(query, 0.0))));
        };
        if let Some(c) = &q.category {
            filter(Box::new(TermQuery::new(
                Term::from_field_text(f.category, c),
                IndexRecordOption::Basic,
            )));
        }
        if q.min_price.is_some() || q.max_price.is_some() {
            let bound = |v: Option<u64>| match v {
                Some(v) => Bound::Included(Term::from_field_u64(f.price, v)),
                None => Bound::Unbounded,
            };
            filter(Box::new(RangeQuery::new(
                bound(q.min_price),
                bound(q.max_price),
            )));
        }
        if q.in_stock {
            filter(Box::new(TermQuery::new(
                Term::from_field_u64(f.in_stock, 1),
                IndexRecordOption::Basic,
            )));
        }
        if let Some(r) = q.min_rating.filter(|r| r.is_finite()) {
            filter(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_f64(f.rating, r)),
                Bound::Unbounded,
            )));
        }
        if must.is_empty() {
            return (Box::new(AllQuery), false);
        }
        (Box::new(BooleanQuery::new(must)), scored)
    }

    /// One page of the products matching `q`, the total and the category counts.
    pub fn search(&self, q: &CatalogQuery) -> Result<SearchHits, SearchError> {
        let (query, scored) = self.query(q);
        let collector = ListingCollector {
            sort: q.sort,
            scored,
            keep: q.offset.saturating_add(q.limit),
        };
        let searcher = self.reader.searcher();
        let fruit = searcher.search(query.as_ref(), &collector)?;
        let mut hits = fruit.hits;
        hits.sort_unstable();
        let skus = hits
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|(_, sku)| sku)
            .collect();
        let mut categories: Vec<FacetCount> = fruit
            .categories
            .into_iter()
            .map(|(value, count)| FacetCount { value, count })
            .collect();
        categories.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        Ok(SearchHits {
            skus,
            total: usize::try_from(fruit.total).unwrap_or(usize::MAX),
            categories,
        })
    }
}

/// Collects every match: its sort key (smaller first) for a top-k per segment, and its
/// category for the counts.
struct ListingCollector {
    sort: SortOrder,
    scored: bool,
    keep: usize,
}

/// What one segment found: its best hits (key, SKU), counts per category, matches.
struct ListingFruit {
    hits: Vec<(u64, String)>,
    categories: BTreeMap<String, u64>,
    total: u64,
}

struct ListingSegment {
    sort: SortOrder,
    keep: usize,
    price: Column<u64>,
    rating: Column<f64>,
    created_at: Column<u64>,
    sku: StrColumn,
    category: Option<StrColumn>,
    /// Matches per category ordinal of this segment.
    category_counts: Vec<u64>,
    /// The best `keep` hits so far as (key, SKU ordinal): within a segment, SKU ordinals are
    /// in SKU order, so ties break as they will across segments.
    best: BinaryHeap<(u64, u64)>,
    total: u64,
}

/// Maps a score (higher first) to a key (smaller first).
fn score_key(score: Score) -> u64 {
    let s = if score.is_finite() && score > 0.0 {
        score
    } else {
        0.0
    };
    u64::from(u32::MAX - s.to_bits())
}

impl ListingSegment {
    fn key(&self, doc: DocId, score: Score) -> u64 {
        match self.sort {
            SortOrder::Relevance => score_key(score),
            SortOrder::PriceAsc => self.price.first(doc).unwrap_or(0),
            SortOrder::PriceDesc => u64::MAX - self.price.first(doc).unwrap_or(0),
            SortOrder::Rating => {
                let r = self.rating.first(doc).unwrap_or(0.0);
                let r = if r.is_finite() && r > 0.0 { r } else { 0.0 };
                u64::MAX - r.to_bits()
            }
            SortOrder::Newest => u64::MAX - self.created_at.first(doc).unwrap_or(0),
        }
    }
}

impl SegmentCollector for ListingSegment {
    type Fruit = Result<ListingFruit, String>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.total += 1;
        if let Some(ord) = self
            .category
            .as_ref()
            .and_then(|c| c.ords().first(doc))
            .and_then(|o| usize::try_from(o).ok())
        {
            if let Some(n) = self.category_counts.get_mut(ord) {
                *n += 1;
            }
        }
        if self.keep == 0 {
            return;
        }
        let Some(sku) = self.sku.ords().first(doc) else {
            return;
        };
        let entry = (self.key(doc, score), sku);
        if self.best.len() < self.keep {
            self.best.push(entry);
        } else if self.best.peek().is_some_and(|worst| entry < *worst) {
            self.best.pop();
            self.best.push(entry);
        }
    }

    fn harvest(self) -> Self::Fruit {
        let mut hits = Vec::with_capacity(self.best.len());
        let mut buf = String::new();
        for (key, ord) in self.best.into_vec() {
            if self
                .sku
                .ord_to_str(ord, &mut buf)
                .map_err(|e| e.to_string())?
            {
                hits.push((key, buf.clone()));
            }
        }
        let mut categories = BTreeMap::new();
        if let Some(c) = &self.category {
            for (ord, n) in self.category_counts.iter().enumerate() {
                if *n > 0
                    && c.ord_to_str(ord as u64, &mut buf)
                        .map_err(|e| e.to_string())?
                {
                    categories.insert(buf.clone(), *n);
                }
            }
        }
        Ok(ListingFruit {
            hits,
            categories,
            total: self.total,
        })
    }
}

impl Collector for ListingCollector {
    type Fruit = ListingFruit;
    type Child = ListingSegment;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<ListingSegment> {
        let ff = reader.fast_fields();
        let sku = ff.str("sku")?.ok_or_else(|| {
            tantivy::TantivyError::SchemaError("the sku fast field is missing".into())
        })?;
        let category = ff.str("category")?;
        let categories = category.as_ref().map_or(0, |c| c.num_terms());
        Ok(ListingSegment {
            sort: self.sort,
            keep: self.keep,
            price: ff.u64("price")?,
            rating: ff.f64("rating")?,
            created_at: ff.u64("created_at")?,
            sku,
            category,
            category_counts: vec![0; categories],
            best: BinaryHeap::new(),
            total: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(
        &self,
        fruits: Vec<Result<ListingFruit, String>>,
    ) -> tantivy::Result<ListingFruit> {
        let mut all = ListingFruit {
            hits: Vec::new(),
            categories: BTreeMap::new(),
            total: 0,
        };
        for f in fruits {
            let f = f.map_err(tantivy::TantivyError::InternalError)?;
            all.hits.extend(f.hits);
            for (c, n) in f.categories {
                *all.categories.entry(c).or_default() += n;
            }
            all.total += f.total;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (sku, name, description, category, price, in stock, rating, created).
    type Product = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        u64,
        bool,
        f64,
        u64,
    );

    /// A fixed catalog.
    const CATALOG: &[Product] = &[
        (
            "AUD-HP-01",
            "Wireless Headphones",
            "Over-ear, noise cancelling",
            "audio",
            799_900,
            true,
            4.5,
            100,
        ),
        (
            "AUD-EB-02",
            "Bluetooth Earbuds",
            "Small and light, with a charging case",
            "audio",
            249_900,
            true,
            4.0,
            200,
        ),
        (
            "AUD-SPK-03",
            "Portable Speaker",
            "Loud enough for a party; pairs with headphones",
            "audio",
            349_900,
            false,
            3.5,
            300,
        ),
        (
            "KIT-KET-01",
            "Electric Kettle",
            "1.5 litre, boils water in minutes",
            "kitchen",
            149_900,
            true,
            4.2,
            400,
        ),
        (
            "KIT-TEA-02",
            "Teapot",
            "Ceramic teapot for loose leaf tea",
            "kitchen",
            99_900,
            true,
            0.0,
            500,
        ),
        (
            "KIT-PAN-03",
            "Frying Pan",
            "Non-stick, 28 cm",
            "kitchen",
            129_900,
            false,
            3.9,
            600,
        ),
        (
            "BOOK-RUST-01",
            "The Rust Programming Language",
            "The official book",
            "books",
            399_900,
            true,
            4.8,
            700,
        ),
        (
            "BOOK-COOK-02",
            "Everyday Cooking",
            "Recipes for the kettle and the pan",
            "books",
            59_900,
            true,
            2.5,
            800,
        ),
        (
            "GROC-TEA-01",
            "Assam Tea 500g",
            "Strong black tea",
            "grocery",
            34_900,
            true,
            4.2,
            900,
        ),
        (
            "GROC-CAFE-02",
            "Café Filter Coffee",
            "South Indian blend",
            "grocery",
            29_900,
            true,
            0.0,
            1000,
        ),
    ];

    fn doc(row: &Product) -> SearchDoc {
        let (sku, name, description, category, price, in_stock, rating, created) = *row;
        SearchDoc {
            sku: sku.into(),
            name: name.into(),
            description: description.into(),
            category: category.into(),
            attributes: BTreeMap::new(),
            price_minor: price,
            in_stock,
            rating,
            created_at_ms: created,
        }
    }

    fn index(merge: MergeMode) -> SearchIndex {
        let idx = SearchIndex::new(merge).unwrap();
        let ops: Vec<IndexOp> = CATALOG.iter().map(|r| IndexOp::Upsert(doc(r))).collect();
        idx.apply(&ops).unwrap();
        idx
    }

    fn query() -> CatalogQuery {
        CatalogQuery {
            limit: 100,
            ..CatalogQuery::default()
        }
    }

    fn q(text: &str) -> CatalogQuery {
        CatalogQuery {
            q: Some(text.into()),
            ..query()
        }
    }

    fn skus(idx: &SearchIndex, q: &CatalogQuery) -> Vec<String> {
        idx.search(q).unwrap().skus
    }

    fn all_skus_sorted() -> Vec<String> {
        let mut v: Vec<String> = CATALOG.iter().map(|r| r.0.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn misspelled_words_find_the_product() {
        let idx = index(MergeMode::Background);
        for typo in ["hedphones", "headphnoes", "HEADFONES", "wireles hedphones"] {
            let found = skus(&idx, &q(typo));
            assert_eq!(
                found.first().map(String::as_str),
                Some("AUD-HP-01"),
                "{typo}: {found:?}"
            );
        }
        // One edit for a short word, not two.
        assert!(skus(&idx, &q("tee")).contains(&"GROC-TEA-01".to_string()));
        assert!(skus(&idx, &q("txx")).is_empty());
        // Accents fold both ways ("case", one edit away, comes after the exact match).
        assert_eq!(skus(&idx, &q("cafe")), vec!["GROC-CAFE-02", "AUD-EB-02"]);
        assert_eq!(skus(&idx, &q("CAFÉ"))[0], "GROC-CAFE-02");
        // Nothing near.
        assert!(skus(&idx, &q("zzzzqqq")).is_empty());
    }

    #[test]
    fn exact_matches_rank_above_fuzzy_and_description_matches() {
        let idx = index(MergeMode::Background);
        // "headphones" is in one name and in another product's description.
        let found = skus(&idx, &q("headphones"));
        assert_eq!(found, vec!["AUD-HP-01", "AUD-SPK-03"]);
        // The named kettle before the cookbook that mentions one.
        let found = skus(&idx, &q("kettle"));
        assert_eq!(found, vec!["KIT-KET-01", "BOOK-COOK-02"]);
        // A prefix matches.
        assert_eq!(skus(&idx, &q("kett"))[0], "KIT-KET-01");
        // Every word must match.
        assert_eq!(skus(&idx, &q("tea assam")), vec!["GROC-TEA-01"]);
        assert!(skus(&idx, &q("tea headphones")).is_empty());
        // A SKU finds its product first, whatever the case.
        assert_eq!(skus(&idx, &q("book-rust-01"))[0], "BOOK-RUST-01");
        assert_eq!(skus(&idx, &q("GROC-TEA-01"))[0], "GROC-TEA-01");
        // Only separators: no words, so everything matches.
        assert_eq!(idx.search(&q(" -- ")).unwrap().total, CATALOG.len());
    }

    #[test]
    fn filters_are_exact() {
        let idx = index(MergeMode::Background);
        let check = |query: CatalogQuery, want: &dyn Fn(&Product) -> bool| {
            let mut expected: Vec<String> = CATALOG
                .iter()
                .filter(|r| want(r))
                .map(|r| r.0.to_string())
                .collect();
            expected.sort();
            let got = idx.search(&query).unwrap();
            assert_eq!(got.skus, expected, "{query:?}");
            assert_eq!(got.total, expected.len(), "{query:?}");
        };
        check(
            CatalogQuery {
                category: Some("kitchen".into()),
                ..query()
            },
            &|r| r.3 == "kitchen",
        );
        check(
            CatalogQuery {
                category: Some("nope".into()),
                ..query()
            },
            &|_| false,
        );
        // Bounds are inclusive.
        check(
            CatalogQuery {
                min_price: Some(99_900),
                max_price: Some(349_900),
                ..query()
            },
            &|r| (99_900..=349_900).contains(&r.4),
        );
        check(
            CatalogQuery {
                min_price: Some(349_901),
                ..query()
            },
            &|r| r.4 >= 349_901,
        );
        check(
            CatalogQuery {
                max_price: Some(34_900),
                ..query()
            },
            &|r| r.4 <= 34_900,
        );
        check(
            CatalogQuery {
                in_stock: true,
                ..query()
            },
            &|r| r.5,
        );
        check(
            CatalogQuery {
                min_rating: Some(4.2),
                ..query()
            },
            &|r| r.6 >= 4.2,
        );
        check(
            CatalogQuery {
                min_rating: Some(0.0),
                ..query()
            },
            &|_| true,
        );
        check(
            CatalogQuery {
                category: Some("audio".into()),
                in_stock: true,
                min_rating: Some(4.0),
                max_price: Some(500_000),
                ..query()
            },
            &|r| r.3 == "audio" && r.5 && r.6 >= 4.0 && r.4 <= 500_000,
        );
        // Text and filters together.
        let got = skus(
            &idx,
            &CatalogQuery {
                category: Some("grocery".into()),
                ..q("tea")
            },
        );
        assert_eq!(got, vec!["GROC-TEA-01"]);
    }

    #[test]
    fn sorts_are_exact_with_ties_by_sku() {
        let idx = index(MergeMode::Background);
        let sorted = |sort: SortOrder| skus(&idx, &CatalogQuery { sort, ..query() });
        let mut rows: Vec<_> = CATALOG.to_vec();
        let names =
            |rows: &[Product]| -> Vec<String> { rows.iter().map(|r| r.0.to_string()).collect() };
        rows.sort_by(|a, b| a.4.cmp(&b.4).then(a.0.cmp(b.0)));
        assert_eq!(sorted(SortOrder::PriceAsc), names(&rows));
        rows.sort_by(|a, b| b.4.cmp(&a.4).then(a.0.cmp(b.0)));
        assert_eq!(sorted(SortOrder::PriceDesc), names(&rows));
        rows.sort_by(|a, b| b.6.total_cmp(&a.6).then(a.0.cmp(b.0)));
        assert_eq!(sorted(SortOrder::Rating), names(&rows));
        rows.sort_by(|a, b| b.7.cmp(&a.7).then(a.0.cmp(b.0)));
        assert_eq!(sorted(SortOrder::Newest), names(&rows));
        // Relevance without words: SKU order (the listing's old order).
        assert_eq!(sorted(SortOrder::Relevance), all_skus_sorted());
        // The rating ties (4.2, and the unrated 0.0) are in SKU order.
        let by_rating = sorted(SortOrder::Rating);
        let pos = |s: &str| by_rating.iter().position(|x| x == s).unwrap();
        assert!(pos("GROC-TEA-01") < pos("KIT-KET-01"));
        assert!(pos("GROC-CAFE-02") < pos("KIT-TEA-02"));
        // A sort with words: only matches, in the sort's order.
        let teas = skus(
            &idx,
            &CatalogQuery {
                sort: SortOrder::PriceDesc,
                ..q("tea")
            },
        );
        assert_eq!(teas, vec!["KIT-TEA-02", "GROC-TEA-01"]);
    }

    #[test]
    fn pages_cover_every_match_once() {
        let idx = index(MergeMode::Background);
        for sort in SortOrder::ALL {
            let whole = skus(&idx, &CatalogQuery { sort, ..query() });
            let mut paged = Vec::new();
            for page in 0..4 {
                let got = idx
                    .search(&CatalogQuery {
                        sort,
                        offset: page * 3,
                        limit: 3,
                        ..query()
                    })
                    .unwrap();
                assert_eq!(got.total, CATALOG.len());
                assert!(got.skus.len() <= 3);
                paged.extend(got.skus);
            }
            assert_eq!(paged, whole, "{sort:?}");
        }
        let beyond = idx
            .search(&CatalogQuery {
                offset: 1000,
                limit: 10,
                ..query()
            })
            .unwrap();
        assert!(beyond.skus.is_empty());
        assert_eq!(beyond.total, CATALOG.len());
        assert_eq!(beyond.categories.iter().map(|c| c.count).sum::<u64>(), 10);
    }

    #[test]
    fn facets_count_the_filtered_matches_before_pagination() {
        let idx = index(MergeMode::Background);
        let got = idx
            .search(&CatalogQuery {
                limit: 1,
                ..query()
            })
            .unwrap();
        let facets: Vec<(&str, u64)> = got
            .categories
            .iter()
            .map(|c| (c.value.as_str(), c.count))
            .collect();
        assert_eq!(
            facets,
            vec![("audio", 3), ("kitchen", 3), ("books", 2), ("grocery", 2)]
        );
        let got = idx
            .search(&CatalogQuery {
                in_stock: true,
                limit: 1,
                ..q("tea")
            })
            .unwrap();
        let facets: Vec<(&str, u64)> = got
            .categories
            .iter()
            .map(|c| (c.value.as_str(), c.count))
            .collect();
        assert_eq!(facets, vec![("grocery", 1), ("kitchen", 1)]);
        assert_eq!(got.total, 2);
        let none = idx.search(&q("zzzzqqq")).unwrap();
        assert!(none.categories.is_empty());
        assert_eq!(none.total, 0);
    }

    #[test]
    fn updates_and_removals_replace_documents() {
        for merge in [MergeMode::Background, MergeMode::Inline] {
            let idx = index(merge);
            let mut kettle = doc(&CATALOG[3]);
            kettle.name = "Gooseneck Kettle".into();
            kettle.price_minor = 10;
            kettle.attributes = BTreeMap::from([("color".to_string(), "matte black".to_string())]);
            idx.apply(&[IndexOp::Upsert(kettle.clone())]).unwrap();
            assert_eq!(idx.len(), CATALOG.len() as u64);
            assert_eq!(skus(&idx, &q("gooseneck")), vec!["KIT-KET-01"]);
            assert_eq!(skus(&idx, &q("matte blak")), vec!["KIT-KET-01"]);
            assert_eq!(
                skus(
                    &idx,
                    &CatalogQuery {
                        sort: SortOrder::PriceAsc,
                        ..query()
                    }
                )[0],
                "KIT-KET-01"
            );
            idx.apply(&[IndexOp::Remove("KIT-KET-01".into())]).unwrap();
            assert!(skus(&idx, &q("gooseneck")).is_empty());
            assert_eq!(idx.len(), CATALOG.len() as u64 - 1);
            // Many small batches: inline merges keep the segment count bounded.
            for i in 0..20u64 {
                kettle.price_minor = 100 + i;
                idx.apply(&[
                    IndexOp::Upsert(kettle.clone()),
                    IndexOp::Remove("nope".into()),
                ])
                .unwrap();
            }
            assert_eq!(idx.len(), CATALOG.len() as u64);
            let got = idx
                .search(&CatalogQuery {
                    max_price: Some(200),
                    ..query()
                })
                .unwrap();
            assert_eq!(got.skus, vec!["KIT-KET-01"]);
            if merge == MergeMode::Inline {
                assert!(idx.index.searchable_segment_ids().unwrap().len() <= MAX_SEGMENTS);
            }
        }
    }

    #[test]
    fn long_queries_count_their_first_words() {
        let idx = index(MergeMode::Background);
        // Sixteen distinct words that all match the headphones, then one that matches
        // nothing: only the first sixteen count.
        let words = [
            "wireless",
            "headphones",
            "over",
            "ear",
            "noise",
            "cancelling",
            "audio",
            "wire",
            "head",
            "nois",
            "canc",
            "cancel",
            "headph",
            "wirel",
            "aud",
            "hp",
        ];
        assert_eq!(words.len(), MAX_QUERY_TERMS);
        let long = format!("{} zzzzqqq", words.join(" "));
        assert_eq!(skus(&idx, &q(&long)), vec!["AUD-HP-01"]);
        let short = format!("{} zzzzqqq", words[..15].join(" "));
        assert!(skus(&idx, &q(&short)).is_empty());
        // Repeated words count once.
        let repeated = "headphones ".repeat(30);
        assert_eq!(skus(&idx, &q(&repeated))[0], "AUD-HP-01");
    }
}
