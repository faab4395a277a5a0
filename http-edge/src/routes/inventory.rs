//! Stock routes (admin): receive, write off, read.

use super::products::fetch_product;
use crate::dto::{QuantityRequest, StockDto};
use crate::extract::{Admin, ApiJson, ApiPath};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::stock::StockCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

async fn stock(st: &EdgeState, sku: &str, cmd: StockCommand) -> ApiResult<Json<StockDto>> {
    fetch_product(st.client.as_ref(), sku).await?;
    match st
        .client
        .ask(
            EntityRef::new(EntityKind::StockItem, sku),
            Command::Stock(cmd),
        )
        .await?
    {
        Reply::Stock(s) => Ok(Json(StockDto {
            sku: s.sku,
            on_hand: s.on_hand,
            reserved: s.reserved,
            available: s.available,
            sold: s.sold,
        })),
        _ => Err(Problem::internal("unexpected reply to a stock command")),
    }
}

/// Reads a SKU's stock (admin).
#[utoipa::path(get, path = "/api/v1/inventory/{sku}", tag = "inventory", params(("sku" = String, Path, description = "SKU")), security(("bearer" = [])),
    responses((status = 200, body = StockDto), (status = 403, description = "not an admin"), (status = 404, description = "no such product")))]
pub async fn get_stock(
    State(st): State<Arc<EdgeState>>,
    _a: Admin,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Json<StockDto>> {
    stock(&st, &sku, StockCommand::Get).await
}

/// Records goods received (admin).
#[utoipa::path(post, path = "/api/v1/inventory/{sku}/receive", tag = "inventory", params(("sku" = String, Path, description = "SKU")),
    request_body = QuantityRequest, security(("bearer" = [])), responses((status = 200, body = StockDto), (status = 403, description = "not an admin"), (status = 404, description = "no such product"), (status = 422, description = "bad quantity")))]
pub async fn receive(
    State(st): State<Arc<EdgeState>>,
    _a: Admin,
    ApiPath(sku): ApiPath<String>,
    ApiJson(q): ApiJson<QuantityRequest>,
) -> ApiResult<Json<StockDto>> {
    stock(
        &st,
        &sku,
        StockCommand::Receive {
            quantity: q.quantity,
        },
    )
    .await
}

/// Writes off available units (admin).
#[utoipa::path(post, path = "/api/v1/inventory/{sku}/write-off", tag = "inventory", params(("sku" = String, Path, description = "SKU")),
    request_body = QuantityRequest, security(("bearer" = [])), responses((status = 200, body = StockDto), (status = 403, description = "not an admin"), (status = 404, description = "no such product"), (status = 409, description = "more than available"), (status = 422, description = "bad quantity")))]
pub async fn write_off(
    State(st): State<Arc<EdgeState>>,
    _a: Admin,
    ApiPath(sku): ApiPath<String>,
    ApiJson(q): ApiJson<QuantityRequest>,
) -> ApiResult<Json<StockDto>> {
    stock(
        &st,
        &sku,
        StockCommand::WriteOff {
            quantity: q.quantity,
        },
    )
    .await
}
