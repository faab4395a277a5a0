//! The catalog: listing and search, one product, and the admin's create, update and archive.

use super::validate;
use crate::catalog::{CatalogEntry, CatalogQuery, SortOrder};
use crate::dto::{
    rfc3339, CreateProductRequest, FacetCountDto, FacetsDto, MoneyDto, ProductDto, ProductPage,
    ProductQuery, UpdateProductRequest,
};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::client::EntityClient;
use agora_actors::limits::{valid_text, MAX_TEXT_LEN};
use agora_actors::money::Money;
use agora_actors::product::{ProductCommand, ProductDetails, ProductPatch, ProductView};
use agora_actors::stock::StockCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest price bound a listing accepts, in minor units.
pub const MAX_PRICE_BOUND: u64 = 1_000_000_000_000;
/// Highest rating.
pub const MAX_RATING: f64 = 5.0;

fn not_found(sku: &str) -> Problem {
    Problem::not_found(format!(
        "product {}",
        sku.chars().take(64).collect::<String>()
    ))
}

/// Reads a product, archived or not; a malformed SKU is simply not found.
pub async fn fetch_product(client: &dyn EntityClient, sku: &str) -> ApiResult<ProductView> {
    if validate::sku(sku).is_err() {
        return Err(not_found(sku));
    }
    match client
        .ask(
            EntityRef::new(EntityKind::Product, sku),
            Command::Product(ProductCommand::Get),
        )
        .await?
    {
        Reply::Product(p) => Ok(p),
        _ => Err(Problem::internal("unexpected reply to Product::Get")),
    }
}

/// Reads a product that is sold: an archived product is not found.
pub async fn fetch_active_product(client: &dyn EntityClient, sku: &str) -> ApiResult<ProductView> {
    let p = fetch_product(client, sku).await?;
    if p.is_archived() {
        return Err(not_found(sku));
    }
    Ok(p)
}

/// Units available of a SKU.
pub async fn available(client: &dyn EntityClient, sku: &str) -> ApiResult<u64> {
    match client
        .ask(
            EntityRef::new(EntityKind::StockItem, sku),
            Command::Stock(StockCommand::Get),
        )
        .await?
    {
        Reply::Stock(s) => Ok(s.available),
        _ => Err(Problem::internal("unexpected reply to Stock::Get")),
    }
}

fn dto(p: ProductView, available: u64, (rating, review_count): (f64, u64)) -> ProductDto {
    ProductDto {
        archived: p.is_archived(),
        sku: p.sku,
        name: p.details.name,
        description: p.details.description,
        category: p.details.category,
        attributes: p.details.attributes,
        price: MoneyDto {
            amount_minor: p.details.price.amount_minor,
            currency: p.details.price.currency,
        },
        available,
        rating,
        review_count,
        created_at: rfc3339(p.created_at_ms),
    }
}

fn entry_dto(e: CatalogEntry) -> ProductDto {
    ProductDto {
        sku: e.sku,
        name: e.name,
        description: e.description,
        category: e.category,
        attributes: e.attributes,
        price: MoneyDto {
            amount_minor: e.price_minor,
            currency: e.currency,
        },
        available: e.available,
        rating: e.rating,
        review_count: e.review_count,
        created_at: rfc3339(e.created_at_ms),
        archived: false,
    }
}

/// A query parameter's value, `None` when absent or empty.
fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn price_bound(field: &str, v: &Option<String>) -> ApiResult<Option<u64>> {
    let Some(s) = present(v) else {
        return Ok(None);
    };
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_PRICE_BOUND && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(Problem::invalid(
            field,
            format!("an integer 0..={MAX_PRICE_BOUND} (minor units)"),
        )),
    }
}

/// Checks the listing's parameters and turns them into a catalog query.
pub fn listing_query(q: ProductQuery) -> ApiResult<(CatalogQuery, usize, usize)> {
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    if page == 0 || page > 10_000 {
        return Err(Problem::invalid("page", "1..=10000"));
    }
    if per_page == 0 || per_page > 100 {
        return Err(Problem::invalid("per_page", "1..=100"));
    }
    if q.q.as_deref().is_some_and(|s| s.chars().count() > 200) {
        return Err(Problem::invalid("q", "at most 200 characters"));
    }
    if q.category.as_deref().is_some_and(|s| s.len() > 64) {
        return Err(Problem::invalid("category", "at most 64 characters"));
    }
    let min_price = price_bound("min_price", &q.min_price)?;
    let max_price = price_bound("max_price", &q.max_price)?;
    if let (Some(lo), Some(hi)) = (min_price, max_price) {
        if lo > hi {
            return Err(Problem::invalid("min_price", "must not exceed max_price"));
        }
    }
    let in_stock = match present(&q.in_stock) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Problem::invalid("in_stock", "true or false")),
    };
    let min_rating = match present(&q.min_rating) {
        None => None,
        Some(s) => match s.parse::<f64>() {
            Ok(r) if r.is_finite() && (0.0..=MAX_RATING).contains(&r) => Some(r),
            _ => return Err(Problem::invalid("min_rating", "a number from 0 to 5")),
        },
    };
    let sort = match present(&q.sort) {
        None => SortOrder::Relevance,
        Some(s) => SortOrder::parse(s).ok_or_else(|| {
            Problem::invalid(
                "sort",
                "one of relevance, price_asc, price_desc, rating, newest",
            )
        })?,
    };
    let query = CatalogQuery {
        q: q.q.filter(|s| !s.trim().is_empty()),
        category: q.category.filter(|s| !s.is_empty()),
        min_price,
        max_price,
        in_stock,
        min_rating,
        sort,
        offset: (page - 1) * per_page,
        limit: per_page,
    };
    Ok((query, page, per_page))
}

/// Lists and searches products: full text with typo tolerance, filters, sort, pages and
/// category facets.
#[utoipa::path(get, path = "/api/v1/products", operation_id = "list_products", tag = "catalog",
    params(
        ("q" = Option<String>, Query, description = "words to find in the name, description, category, attributes or SKU (at most 200 characters; the first 16 words count); every word must match, exactly, as a prefix or with a typo (1 edit for words of 3 to 5 letters, 2 for longer ones)"),
        ("category" = Option<String>, Query, description = "only this category"),
        ("min_price" = Option<u64>, Query, description = "lowest unit price in minor units, 0..=10^12"),
        ("max_price" = Option<u64>, Query, description = "highest unit price in minor units, 0..=10^12, not below min_price"),
        ("in_stock" = Option<bool>, Query, description = "true: only products with units available"),
        ("min_rating" = Option<f64>, Query, description = "lowest average rating, 0 to 5"),
        ("sort" = Option<String>, Query, description = "relevance (default; SKU order without q), price_asc, price_desc, rating or newest; ties in SKU order"),
        ("page" = Option<usize>, Query, description = "page, from 1"),
        ("per_page" = Option<usize>, Query, description = "page size, 1..=100")),
    responses((status = 200, body = ProductPage), (status = 400, description = "malformed page or per_page"),
              (status = 422, description = "a parameter out of range (the problem's field names it)"),
              (status = 503, description = "the search index is unavailable")))]
pub async fn list(
    State(st): State<Arc<EdgeState>>,
    ApiQuery(q): ApiQuery<ProductQuery>,
) -> ApiResult<Json<ProductPage>> {
    let (query, page, per_page) = listing_query(q)?;
    let found = st
        .catalog
        .search(&query)
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    Ok(Json(ProductPage {
        items: found.items.into_iter().map(entry_dto).collect(),
        total: found.total,
        page,
        per_page,
        facets: FacetsDto {
            category: found
                .categories
                .into_iter()
                .map(|f| FacetCountDto {
                    value: f.value,
                    count: f.count,
                })
                .collect(),
        },
    }))
}

/// Reads one product with its current availability (archived products are not found).
#[utoipa::path(get, path = "/api/v1/products/{sku}", operation_id = "get_product", tag = "catalog", params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = ProductDto, headers(("ETag" = String, description = "the product's version, for `If-Match` on an update"))),
              (status = 404, description = "no such product, or archived")))]
pub async fn get_one(
    State(st): State<Arc<EdgeState>>,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Response> {
    let p = fetch_active_product(st.client.as_ref(), &sku).await?;
    let available = available(st.client.as_ref(), &sku).await?;
    let etag = p.etag();
    Ok(crate::precondition::with_etag(
        Json(dto(p, available, st.catalog.rating(&sku))),
        &etag,
    ))
}

/// Checks attribute names and values (the domain checks them again).
fn check_attributes(attributes: &BTreeMap<String, String>) -> ApiResult<()> {
    agora_actors::product::validate_attributes(attributes)?;
    for (k, v) in attributes {
        validate::name(&format!("attributes.{k}"), v)?;
    }
    Ok(())
}

/// Creates a product (admin).
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = CreateProductRequest, security(("bearer" = [])),
    responses((status = 201, body = ProductDto, description = "the product was created",
               headers(("Location" = String, description = "the product: /api/v1/products/{sku}"))),
              (status = 403, description = "not an admin"), (status = 409, description = "SKU exists (archived products too)"),
              (status = 422, description = "invalid field")))]
pub async fn create(
    State(st): State<Arc<EdgeState>>,
    _admin: Admin,
    ApiJson(req): ApiJson<CreateProductRequest>,
) -> ApiResult<axum::response::Response> {
    validate::sku(&req.sku)?;
    validate::name("name", &req.name)?;
    check_attributes(&req.attributes)?;
    let details = ProductDetails {
        name: req.name,
        description: req.description,
        category: req.category,
        price: Money {
            amount_minor: req.price.amount_minor,
            currency: req.price.currency,
        },
        attributes: req.attributes,
    };
    agora_actors::product::validate(&details)?;
    let p = product_command(
        st.client.as_ref(),
        &req.sku,
        ProductCommand::Create(details),
    )
    .await?;
    let available = available(st.client.as_ref(), &req.sku).await?;
    Ok(crate::created::with_location(
        (StatusCode::CREATED, Json(dto(p, available, (0.0, 0)))),
        &format!("/api/v1/products/{}", req.sku),
    ))
}

async fn product_command(
    client: &dyn EntityClient,
    sku: &str,
    cmd: ProductCommand,
) -> ApiResult<ProductView> {
    match client
        .ask(
            EntityRef::new(EntityKind::Product, sku),
            Command::Product(cmd),
        )
        .await?
    {
        Reply::Product(p) => Ok(p),
        _ => Err(Problem::internal("unexpected reply to a product command")),
    }
}

/// Changes a product's name, description, category, attributes or price (admin). Fields left
/// out keep their value; `attributes` replaces them all. The same request again changes
/// nothing, so a retry is safe. With `If-Match` (the `ETag` of a read), the change applies
/// only if nobody changed the product since; the answer carries the new `ETag`.
#[utoipa::path(patch, path = "/api/v1/products/{sku}", tag = "catalog", request_body = UpdateProductRequest, security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU"),
           ("If-Match" = Option<String>, Header, description = "the `ETag` of the version read: the update applies only if the product is still at it (`*` or absent: any version)")),
    responses((status = 200, body = ProductDto, headers(("ETag" = String, description = "the product's new version"))),
              (status = 400, description = "If-Match is not a list of entity tags"),
              (status = 403, description = "not an admin"), (status = 404, description = "no such product"),
              (status = 409, description = "the product is archived"),
              (status = 412, description = "`If-Match` names a version the product is no longer at: read it again, then retry"),
              (status = 422, description = "invalid field, unknown field, or no field to change")))]
pub async fn update(
    State(st): State<Arc<EdgeState>>,
    _admin: Admin,
    ApiPath(sku): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UpdateProductRequest>,
) -> ApiResult<Response> {
    let expected = crate::precondition::if_match(&headers)?;
    if validate::sku(&sku).is_err() {
        return Err(not_found(&sku));
    }
    if let Some(name) = &req.name {
        validate::name("name", name)?;
    }
    if let Some(d) = &req.description {
        if !valid_text(d, MAX_TEXT_LEN) {
            return Err(Problem::invalid(
                "description",
                format!("at most {MAX_TEXT_LEN} characters"),
            ));
        }
    }
    if let Some(a) = &req.attributes {
        check_attributes(a)?;
    }
    let patch = ProductPatch {
        name: req.name,
        description: req.description,
        category: req.category,
        attributes: req.attributes,
        price: req.price.map(|p| Money {
            amount_minor: p.amount_minor,
            currency: p.currency,
        }),
    };
    if patch.is_empty() {
        return Err(Problem::invalid(
            "body",
            "give at least one of name, description, category, attributes, price",
        ));
    }
    let cmd = match expected {
        Some(etags) => ProductCommand::UpdateIfMatch { patch, etags },
        None => ProductCommand::Update(patch),
    };
    let p = product_command(st.client.as_ref(), &sku, cmd).await?;
    let available = available(st.client.as_ref(), &sku).await?;
    let etag = p.etag();
    Ok(crate::precondition::with_etag(
        Json(dto(p, available, st.catalog.rating(&sku))),
        &etag,
    ))
}

/// Archives a product (admin): it leaves listings and search and can no longer be added to
/// carts or bought; orders already placed are unaffected. Archiving again changes nothing.
#[utoipa::path(post, path = "/api/v1/products/{sku}/archive", tag = "catalog", security(("bearer" = [])),
    params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = ProductDto, description = "the archived product (`archived: true`)"), (status = 403, description = "not an admin"),
              (status = 404, description = "no such product")))]
pub async fn archive(
    State(st): State<Arc<EdgeState>>,
    _admin: Admin,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Json<ProductDto>> {
    if validate::sku(&sku).is_err() {
        return Err(not_found(&sku));
    }
    let p = product_command(st.client.as_ref(), &sku, ProductCommand::Archive).await?;
    let available = available(st.client.as_ref(), &sku).await?;
    Ok(Json(dto(p, available, st.catalog.rating(&sku))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ProductQuery {
        let mut q = ProductQuery {
            q: None,
            category: None,
            min_price: None,
            max_price: None,
            in_stock: None,
            min_rating: None,
            sort: None,
            page: None,
            per_page: None,
        };
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "q" => q.q = v,
                "category" => q.category = v,
                "min_price" => q.min_price = v,
                "max_price" => q.max_price = v,
                "in_stock" => q.in_stock = v,
                "min_rating" => q.min_rating = v,
                "sort" => q.sort = v,
                "page" => q.page = v.and_then(|s| s.parse().ok()),
                "per_page" => q.per_page = v.and_then(|s| s.parse().ok()),
                _ => panic!("unknown parameter {k}"),
            }
        }
        q
    }

    fn field_of(pairs: &[(&str, &str)]) -> String {
        match listing_query(params(pairs)) {
            Ok(q) => panic!("{pairs:?} accepted: {q:?}"),
            Err(p) => {
                assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{pairs:?}");
                p.extra["field"].as_str().unwrap_or_default().to_string()
            }
        }
    }

    #[test]
    fn defaults_keep_the_old_contract() {
        let (q, page, per_page) = listing_query(params(&[])).unwrap();
        assert_eq!((page, per_page), (1, 20));
        assert_eq!(
            q,
            CatalogQuery {
                limit: 20,
                ..CatalogQuery::default()
            }
        );
        // Empty values count as absent, blank words as no words.
        let (q, _, _) = listing_query(params(&[
            ("q", "  "),
            ("category", ""),
            ("min_price", ""),
            ("max_price", " "),
            ("in_stock", ""),
            ("min_rating", ""),
            ("sort", ""),
        ]))
        .unwrap();
        assert_eq!(q.q, None);
        assert_eq!(q.category, None);
        assert_eq!((q.min_price, q.max_price, q.min_rating), (None, None, None));
        assert!(!q.in_stock);
        assert_eq!(q.sort, SortOrder::Relevance);
    }

    #[test]
    fn every_parameter_is_parsed() {
        let (q, page, per_page) = listing_query(params(&[
            ("q", "tea"),
            ("category", "grocery"),
            ("min_price", "0"),
            ("max_price", "1000000000000"),
            ("in_stock", "true"),
            ("min_rating", "4.5"),
            ("sort", "price_desc"),
            ("page", "3"),
            ("per_page", "10"),
        ]))
        .unwrap();
        assert_eq!((page, per_page, q.offset, q.limit), (3, 10, 20, 10));
        assert_eq!(q.q.as_deref(), Some("tea"));
        assert_eq!(q.category.as_deref(), Some("grocery"));
        assert_eq!((q.min_price, q.max_price), (Some(0), Some(MAX_PRICE_BOUND)));
        assert!(q.in_stock);
        assert_eq!(q.min_rating, Some(4.5));
        assert_eq!(q.sort, SortOrder::PriceDesc);
        let (q, _, _) = listing_query(params(&[("in_stock", "false")])).unwrap();
        assert!(!q.in_stock);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let long = "x".repeat(201);
        assert_eq!(field_of(&[("q", &long)]), "q");
        assert_eq!(field_of(&[("page", "0")]), "page");
        assert_eq!(field_of(&[("page", "10001")]), "page");
        assert_eq!(field_of(&[("per_page", "0")]), "per_page");
        assert_eq!(field_of(&[("per_page", "101")]), "per_page");
        assert_eq!(field_of(&[("category", &"c".repeat(65))]), "category");
        for bad in ["-1", "+5", "1.5", "1e3", "abc", "1000000000001"] {
            assert_eq!(field_of(&[("min_price", bad)]), "min_price", "{bad}");
            assert_eq!(field_of(&[("max_price", bad)]), "max_price", "{bad}");
        }
        assert_eq!(
            field_of(&[("min_price", "501"), ("max_price", "500")]),
            "min_price"
        );
        for bad in ["yes", "1", "TRUE"] {
            assert_eq!(field_of(&[("in_stock", bad)]), "in_stock", "{bad}");
        }
        for bad in ["-0.1", "5.01", "NaN", "inf", "four"] {
            assert_eq!(field_of(&[("min_rating", bad)]), "min_rating", "{bad}");
        }
        for bad in ["cheapest", "PRICE_ASC", "price"] {
            assert_eq!(field_of(&[("sort", bad)]), "sort", "{bad}");
        }
    }
}
