//! The catalog: listing, one product, and creation (admin).

use super::validate;
use crate::catalog::CatalogQuery;
use crate::dto::{CreateProductRequest, MoneyDto, ProductDto, ProductPage, ProductQuery};
use crate::extract::{Admin, ApiJson, ApiPath, ApiQuery};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::client::EntityClient;
use agora_actors::money::Money;
use agora_actors::product::{ProductCommand, ProductDetails, ProductView};
use agora_actors::stock::StockCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

/// Reads a product; a malformed SKU is simply not found.
pub async fn fetch_product(client: &dyn EntityClient, sku: &str) -> ApiResult<ProductView> {
    if validate::sku(sku).is_err() {
        return Err(Problem::not_found(format!(
            "product {}",
            sku.chars().take(64).collect::<String>()
        )));
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

fn dto(p: ProductView, available: u64) -> ProductDto {
    ProductDto {
        sku: p.sku,
        name: p.details.name,
        description: p.details.description,
        category: p.details.category,
        price: MoneyDto {
            amount_minor: p.details.price.amount_minor,
            currency: p.details.price.currency,
        },
        available,
    }
}

/// Lists products, filtered and paged.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog",
    params(("q" = Option<String>, Query, description = "words to find"), ("category" = Option<String>, Query, description = "category"),
           ("page" = Option<usize>, Query, description = "page, from 1"), ("per_page" = Option<usize>, Query, description = "page size, 1..=100")),
    responses((status = 200, body = ProductPage)))]
pub async fn list(
    State(st): State<Arc<EdgeState>>,
    ApiQuery(q): ApiQuery<ProductQuery>,
) -> ApiResult<Json<ProductPage>> {
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
    let query = CatalogQuery {
        q: q.q.filter(|s| !s.trim().is_empty()),
        category: q.category.filter(|s| !s.is_empty()),
        offset: (page - 1) * per_page,
        limit: per_page,
    };
    let (entries, total) = st.catalog.search(&query);
    let items = entries
        .into_iter()
        .map(|e| ProductDto {
            sku: e.sku,
            name: e.name,
            description: e.description,
            category: e.category,
            price: MoneyDto {
                amount_minor: e.price_minor,
                currency: e.currency,
            },
            available: e.available,
        })
        .collect();
    Ok(Json(ProductPage {
        items,
        total,
        page,
        per_page,
    }))
}

/// Reads one product with its current availability.
#[utoipa::path(get, path = "/api/v1/products/{sku}", tag = "catalog", params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, body = ProductDto), (status = 404, description = "no such product")))]
pub async fn get_one(
    State(st): State<Arc<EdgeState>>,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Json<ProductDto>> {
    let p = fetch_product(st.client.as_ref(), &sku).await?;
    let available = available(st.client.as_ref(), &sku).await?;
    Ok(Json(dto(p, available)))
}

/// Creates a product (admin).
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = CreateProductRequest, security(("bearer" = [])),
    responses((status = 201, body = ProductDto), (status = 403, description = "not an admin"), (status = 409, description = "SKU exists")))]
pub async fn create(
    State(st): State<Arc<EdgeState>>,
    _admin: Admin,
    ApiJson(req): ApiJson<CreateProductRequest>,
) -> ApiResult<(StatusCode, Json<ProductDto>)> {
    validate::sku(&req.sku)?;
    validate::name("name", &req.name)?;
    let details = ProductDetails {
        name: req.name,
        description: req.description,
        category: req.category,
        price: Money {
            amount_minor: req.price.amount_minor,
            currency: req.price.currency,
        },
    };
    agora_actors::product::validate(&details)?;
    let reply = st
        .client
        .ask(
            EntityRef::new(EntityKind::Product, req.sku.clone()),
            Command::Product(ProductCommand::Create(details)),
        )
        .await?;
    let Reply::Product(p) = reply else {
        return Err(Problem::internal("unexpected reply to Product::Create"));
    };
    let available = available(st.client.as_ref(), &req.sku).await?;
    Ok((StatusCode::CREATED, Json(dto(p, available))))
}
