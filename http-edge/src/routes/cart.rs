//! The caller's cart.

use super::products::{fetch_active_product, fetch_product};
use crate::dto::{AddItemRequest, CartDto, CartLineDto, MoneyDto};
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::cart::CartCommand;
use agora_actors::client::EntityClient;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

/// Runs a cart command and answers the cart priced at current prices.
pub async fn cart_command(
    client: &dyn EntityClient,
    user_id: &str,
    cmd: CartCommand,
) -> ApiResult<(Vec<(String, u32)>, CartDto)> {
    let Reply::Cart(lines) = client
        .ask(
            EntityRef::new(EntityKind::Cart, user_id),
            Command::Cart(cmd),
        )
        .await?
    else {
        return Err(Problem::internal("unexpected reply to a cart command"));
    };
    let mut items = Vec::with_capacity(lines.len());
    let mut total = 0u64;
    for (sku, quantity) in &lines {
        let p = fetch_product(client, sku).await?;
        let unit = p.details.price.amount_minor;
        let line = unit * u64::from(*quantity);
        total += line;
        items.push(CartLineDto {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price: MoneyDto::shop(unit),
            line_total: MoneyDto::shop(line),
        });
    }
    Ok((
        lines,
        CartDto {
            items,
            total: MoneyDto::shop(total),
        },
    ))
}

/// Reads the caller's cart.
#[utoipa::path(get, path = "/api/v1/cart", tag = "cart", security(("bearer" = [])), responses((status = 200, body = CartDto)))]
pub async fn get_cart(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
) -> ApiResult<Json<CartDto>> {
    Ok(Json(
        cart_command(st.client.as_ref(), &caller.user_id, CartCommand::Get)
            .await?
            .1,
    ))
}

/// Adds units of a product to the caller's cart.
#[utoipa::path(post, path = "/api/v1/cart/items", tag = "cart", request_body = AddItemRequest, security(("bearer" = [])),
    responses((status = 200, body = CartDto), (status = 404, description = "no such product, or archived"), (status = 422, description = "bad quantity")))]
pub async fn add_item(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiJson(req): ApiJson<AddItemRequest>,
) -> ApiResult<Json<CartDto>> {
    fetch_active_product(st.client.as_ref(), &req.sku).await?;
    let cmd = CartCommand::AddItem {
        sku: req.sku,
        quantity: req.quantity,
    };
    Ok(Json(
        cart_command(st.client.as_ref(), &caller.user_id, cmd)
            .await?
            .1,
    ))
}

/// Removes a product's line from the caller's cart.
#[utoipa::path(delete, path = "/api/v1/cart/items/{sku}", tag = "cart", params(("sku" = String, Path, description = "SKU")), security(("bearer" = [])),
    responses((status = 200, body = CartDto), (status = 404, description = "not in the cart")))]
pub async fn remove_item(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(sku): ApiPath<String>,
) -> ApiResult<Json<CartDto>> {
    if super::validate::sku(&sku).is_err() {
        return Err(Problem::not_found("no such cart line"));
    }
    Ok(Json(
        cart_command(
            st.client.as_ref(),
            &caller.user_id,
            CartCommand::RemoveItem { sku },
        )
        .await?
        .1,
    ))
}
