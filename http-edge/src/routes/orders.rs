//! Checkout, orders and shipments. A checkout's order id is derived from the caller and the
//! `Idempotency-Key`, so a retry reaches the same Order entity and gets the same answer.

use super::paging::{self, CursorList};
use super::validate;
use crate::dto::{
    CheckoutRequest, CursorQuery, OrderCreated, OrderDto, OrderList, PaymentRequest, ShipmentDto,
};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::account::{AccountCommand, Role};
use agora_actors::cart::CartCommand;
use agora_actors::client::{AskError, Pending};
use agora_actors::gateway::TokeniseError;
use agora_actors::history;
use agora_actors::ids::order_id_for_key;
use agora_actors::order::{Address, OrderCommand, OrderLine, OrderView, Placement, Settlement};
use agora_actors::payment::Method;
use agora_actors::shipment::ShipmentCommand;
use agora_actors::{Command, DomainError, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

fn validate_checkout(req: &CheckoutRequest) -> Result<(), Problem> {
    let a = &req.shipping_address;
    validate::name("shipping_address.name", &a.name)?;
    validate::name("shipping_address.line1", &a.line1)?;
    validate::name("shipping_address.city", &a.city)?;
    if a.postal_code.is_empty()
        || a.postal_code.len() > 16
        || !a
            .postal_code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
    {
        return Err(Problem::invalid(
            "shipping_address.postal_code",
            "1 to 16 letters, digits, spaces or dashes",
        ));
    }
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::invalid(
            "shipping_address.country",
            "an ISO 3166 alpha-2 code like IN",
        ));
    }
    if let Some(sh) = &req.shipping {
        if agora_actors::shipping::courier(&sh.courier).is_none() {
            return Err(Problem::invalid(
                "shipping.courier",
                format!(
                    "one of {}",
                    agora_actors::shipping::COURIERS
                        .iter()
                        .map(|c| c.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    match &req.payment {
        PaymentRequest::Card { card_number } => validate::card_number(card_number),
        PaymentRequest::Upi { vpa } => validate::vpa(vpa),
        PaymentRequest::Wallet => Ok(()),
    }
}

/// The method a (valid) request pays by. A card number is exchanged here for the gateway's
/// reference (token, last four digits, fingerprint): the number goes no further, so no
/// entity, message, outbox row or log ever holds it.
async fn payment_method(st: &EdgeState, payment: &PaymentRequest) -> Result<Method, Problem> {
    Ok(match payment {
        PaymentRequest::Card { card_number } => {
            let card = st
                .cards
                .tokenise_card(card_number)
                .await
                .map_err(|e| match e {
                    TokeniseError::Refused(_) => {
                        Problem::invalid("payment.card_number", "a card number the gateway accepts")
                    }
                    TokeniseError::Unavailable(e) => Problem::unavailable(format!(
                        "the payment gateway did not take the card: {e}"
                    )),
                })?;
            Method::Card(card)
        }
        PaymentRequest::Upi { vpa } => Method::Upi { vpa: vpa.clone() },
        PaymentRequest::Wallet => Method::Wallet,
    })
}

/// The hash that tells a retry from another request: of the body with a card named by its
/// fingerprint, so the stored hash says nothing about the number.
fn request_hash(req: &CheckoutRequest, method: &Method) -> Result<String, Problem> {
    let mut hashed = req.clone();
    if let (PaymentRequest::Card { card_number }, Method::Card(card)) =
        (&mut hashed.payment, method)
    {
        card_number.clone_from(&card.fingerprint);
    }
    let body = serde_json::to_string(&hashed).map_err(|e| Problem::internal(e.to_string()))?;
    Ok(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(body.as_bytes())
    ))
}

fn order_ref(order_id: &str) -> EntityRef {
    EntityRef::new(EntityKind::Order, order_id)
}

pub(crate) async fn order_cmd(
    st: &EdgeState,
    order_id: &str,
    cmd: OrderCommand,
) -> Result<OrderView, AskError> {
    match st
        .client
        .ask(order_ref(order_id), Command::Order(cmd))
        .await?
    {
        Reply::Order(v) => Ok(v),
        _ => Err(AskError::Unavailable(
            "unexpected reply to an order command".into(),
        )),
    }
}

/// Answers a checkout from the order's settlement (the same answer for every retry); a 201
/// names the order in `Location`.
fn checkout_response(v: &OrderView) -> Response {
    let location = format!("/api/v1/orders/{}", v.order_id);
    crate::created::with_location(settlement_response(v), &location)
}

fn settlement_response(v: &OrderView) -> Response {
    match &v.settlement {
        Some(Settlement::OutOfStock {
            sku,
            requested,
            available,
        }) => Problem::from(DomainError::OutOfStock {
            sku: sku.clone(),
            requested: *requested,
            available: *available,
        })
        .with("order_id", v.order_id.clone())
        .into_response(),
        Some(Settlement::Accepted(status)) => (
            StatusCode::CREATED,
            Json(OrderCreated {
                order_id: v.order_id.clone(),
                status: status.name().into(),
            }),
        )
            .into_response(),
        None => (
            StatusCode::CREATED,
            Json(OrderCreated {
                order_id: v.order_id.clone(),
                status: v.status.clone(),
            }),
        )
            .into_response(),
    }
}

/// Checks out the caller's cart.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = CheckoutRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1..=128 visible ASCII characters; a retry with the same key returns the same answer")),
    responses((status = 201, body = OrderCreated, description = "the order was placed (a retry with the same key answers as the first time, with Idempotent-Replayed: true)",
               headers(("Location" = String, description = "the order: /api/v1/orders/{order_id}"), ("Idempotent-Replayed" = String, description = "true when this answer replays an earlier one"))),
              (status = 400, description = "no Idempotency-Key"), (status = 409, description = "out of stock, or a product in the cart was archived"),
              (status = 422, description = "invalid input, empty cart, or key reused with another body")))]
pub async fn checkout(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CheckoutRequest>,
) -> ApiResult<Response> {
    let key = validate::idempotency_header(&headers)?;
    validate_checkout(&req)?;
    let method = payment_method(&st, &req.payment).await?;
    let request_hash = request_hash(&req, &method)?;
    let order_id = order_id_for_key(&caller.user_id, key);

    // A retry: answer as the first time.
    match order_cmd(&st, &order_id, OrderCommand::Get).await {
        Ok(existing) => {
            let _ = existing;
            return replay(&st, &order_id, &request_hash).await;
        }
        Err(AskError::Domain(DomainError::NotFound(_))) => {}
        Err(e) => return Err(e.into()),
    }

    // The lines leave the cart atomically for this order, so an item added while the
    // checkout is in flight stays in the cart for the next one. The hold is taken before it
    // is durable: the order's placement depends on it (refused if it is, stored no earlier),
    // so both usually share one commit; every answer waits for it to be durable.
    let (cart_lines, hold) = hold_cart(&st, &caller.user_id, &order_id).await?;
    if cart_lines.is_empty() {
        st.client.durable(hold).await?;
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty-cart",
            "Empty cart",
            "add items to the cart before checking out",
        ));
    }
    let placed = place_held(
        &st,
        &caller.user_id,
        &order_id,
        (cart_lines, hold),
        method,
        req,
        &request_hash,
    )
    .await;
    let placed = match placed {
        Ok(v) => v,
        Err(refusal) => {
            if refusal.definite {
                // Refused outright: the lines go back. (On an unknown outcome they stay
                // held; a retry with the same key finds them, and the hold expires otherwise.)
                let restore = CartCommand::Restore {
                    order_id: order_id.clone(),
                };
                let cart = EntityRef::new(EntityKind::Cart, caller.user_id.as_str());
                let _ = st.client.ask(cart, Command::Cart(restore)).await;
            }
            return Err(refusal.problem);
        }
    };
    Ok(checkout_response(
        &await_settled(&st, &order_id, placed).await?,
    ))
}

/// Why a checkout did not place its order, and whether the order is surely not placed.
struct Refusal {
    problem: Problem,
    definite: bool,
}

impl From<AskError> for Refusal {
    fn from(e: AskError) -> Self {
        Self {
            definite: matches!(e, AskError::Domain(_)),
            problem: e.into(),
        }
    }
}

/// Prices the held lines and places the order.
#[allow(clippy::too_many_arguments)]
async fn place_held(
    st: &EdgeState,
    user_id: &str,
    order_id: &str,
    (cart_lines, hold): (Vec<(String, u32)>, Pending),
    method: Method,
    req: CheckoutRequest,
    request_hash: &str,
) -> Result<OrderView, Refusal> {
    let mut lines = Vec::with_capacity(cart_lines.len());
    for (sku, quantity) in cart_lines {
        let p = super::products::fetch_product(st.client.as_ref(), &sku)
            .await
            .map_err(|problem| Refusal {
                definite: problem.status.is_client_error(),
                problem,
            })?;
        if p.is_archived() {
            return Err(Refusal {
                definite: true,
                problem: Problem::new(
                    StatusCode::CONFLICT,
                    "product-archived",
                    "Product no longer sold",
                    format!("product {sku} is no longer sold; remove it from the cart"),
                )
                .with("sku", sku),
            });
        }
        lines.push(OrderLine {
            sku,
            quantity,
            unit_price_minor: p.details.price.amount_minor,
        });
    }
    let courier = req
        .shipping
        .as_ref()
        .map_or(agora_actors::shipping::DEFAULT_COURIER, |s| {
            s.courier.as_str()
        });
    let quote =
        agora_actors::shipping::quote(courier, &req.shipping_address.city).ok_or_else(|| {
            Refusal {
                definite: true,
                problem: Problem::invalid("shipping.courier", "an unknown courier"),
            }
        })?;
    let a = req.shipping_address;
    let placement = Placement {
        customer: user_id.to_string(),
        lines,
        method,
        address: Address {
            name: a.name,
            line1: a.line1,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        },
        request_hash: request_hash.to_string(),
        placed_at_ms: st.clock.now_ms(),
        shipping: agora_actors::shipping::ShippingChoice {
            courier: quote.courier,
            price_minor: quote.price_minor,
        },
    };
    let placed = st
        .client
        .ask_after(
            order_ref(order_id),
            Command::Order(OrderCommand::Place(placement)),
            hold,
        )
        .await?;
    match placed {
        Reply::Order(v) => Ok(v),
        _ => Err(Refusal::from(AskError::Unavailable(
            "unexpected reply to an order command".into(),
        ))),
    }
}

/// Takes the cart's lines for `order_id` (the same lines again on a retry), with the hold
/// still pending.
async fn hold_cart(
    st: &EdgeState,
    user_id: &str,
    order_id: &str,
) -> ApiResult<(Vec<(String, u32)>, Pending)> {
    let hold = CartCommand::Hold {
        order_id: order_id.to_string(),
    };
    match st
        .client
        .ask_early(
            EntityRef::new(EntityKind::Cart, user_id),
            Command::Cart(hold),
        )
        .await?
    {
        (Reply::Cart(lines), pending) => Ok((lines, pending)),
        (_, pending) => {
            st.client.durable(pending).await?;
            Err(Problem::internal("unexpected reply to a cart command"))
        }
    }
}

/// Answers a checkout of an existing order: refused if the key came with another body,
/// otherwise once the stock has answered (or, after `settle_wait`, with the status so far).
async fn replay(st: &EdgeState, order_id: &str, request_hash: &str) -> ApiResult<Response> {
    let check = order_cmd(
        st,
        order_id,
        OrderCommand::CheckRequest {
            request_hash: request_hash.to_string(),
        },
    )
    .await?;
    Ok(crate::created::replayed(checkout_response(
        &await_settled(st, order_id, check).await?,
    )))
}

/// The order once the stock has answered, or after `settle_wait` the view `so_far`.
async fn await_settled(st: &EdgeState, order_id: &str, so_far: OrderView) -> ApiResult<OrderView> {
    match tokio::time::timeout(
        st.config.settle_wait,
        order_cmd(st, order_id, OrderCommand::AwaitSettled),
    )
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(AskError::Timeout)) | Err(_) => Ok(so_far),
        Ok(Err(e)) => Err(e.into()),
    }
}

pub(crate) async fn owned_order(
    st: &EdgeState,
    caller: &Caller,
    order_id: &str,
) -> ApiResult<OrderView> {
    let not_found = || {
        Problem::not_found(format!(
            "order {}",
            order_id.chars().take(64).collect::<String>()
        ))
    };
    if order_id.is_empty() || order_id.len() > 64 {
        return Err(not_found());
    }
    let v = order_cmd(st, order_id, OrderCommand::Get)
        .await
        .map_err(|e| match e {
            AskError::Domain(DomainError::NotFound(_)) => not_found(),
            e => e.into(),
        })?;
    if v.customer != caller.user_id && caller.role != Role::Admin {
        return Err(not_found());
    }
    Ok(v)
}

/// Reads one of the caller's orders.
#[utoipa::path(get, path = "/api/v1/orders/{order_id}", operation_id = "get_order", tag = "orders", params(("order_id" = String, Path, description = "order id")), security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 404, description = "no such order of the caller's")))]
pub async fn get_one(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(order_id): ApiPath<String>,
) -> ApiResult<Json<OrderDto>> {
    Ok(Json(owned_order(&st, &caller, &order_id).await?.into()))
}

/// Lists the caller's orders, newest first, `limit` at a time: the whole history, however
/// long, by following `next_cursor`.
#[utoipa::path(get, path = "/api/v1/orders", operation_id = "list_orders", tag = "orders", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "page size, 1..=100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "the next_cursor of the previous page (opaque); absent for the newest orders")),
    responses((status = 200, body = OrderList), (status = 400, description = "malformed limit, or a cursor this list did not give"),
              (status = 401, description = "no valid bearer token"), (status = 422, description = "limit out of 1..=100")))]
pub async fn list(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CursorQuery>,
) -> ApiResult<Json<OrderList>> {
    let (limit, before) = paging::by_position(CursorList::Orders, q.limit, q.cursor.as_deref())?;
    let account = EntityRef::new(EntityKind::Account, caller.user_id.clone());
    let head = match st
        .client
        .ask(account, Command::Account(AccountCommand::OrderHistory))
        .await?
    {
        Reply::OrderHistory(head) => head,
        _ => return Err(Problem::internal("unexpected reply to OrderHistory")),
    };
    let page = history::read(st.client.as_ref(), &caller.user_id, &head, before, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for id in &page.items {
        items.push(owned_order(&st, &caller, id).await?.into());
    }
    Ok(Json(OrderList {
        items,
        next_cursor: page
            .next_before
            .map(|b| paging::encode(CursorList::Orders, [b])),
    }))
}

/// Cancels one of the caller's orders (refunded if it was paid).
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/cancel", tag = "orders", params(("order_id" = String, Path, description = "order id")), security(("bearer" = [])),
    responses((status = 200, body = OrderDto), (status = 404, description = "no such order"), (status = 409, description = "already shipped")))]
pub async fn cancel(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(order_id): ApiPath<String>,
) -> ApiResult<Json<OrderDto>> {
    owned_order(&st, &caller, &order_id).await?;
    Ok(Json(
        order_cmd(&st, &order_id, OrderCommand::Cancel)
            .await?
            .into(),
    ))
}

/// Reads the shipment of one of the caller's orders.
#[utoipa::path(get, path = "/api/v1/shipments/{shipment_id}", tag = "orders", params(("shipment_id" = String, Path, description = "shipment id")), security(("bearer" = [])),
    responses((status = 200, body = ShipmentDto), (status = 404, description = "no such shipment of the caller's")))]
pub async fn get_shipment(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(shipment_id): ApiPath<String>,
) -> ApiResult<Json<ShipmentDto>> {
    let not_found = || Problem::not_found("no such shipment");
    if shipment_id.is_empty() || shipment_id.len() > 80 {
        return Err(not_found());
    }
    let reply = st
        .client
        .ask(
            EntityRef::new(EntityKind::Shipment, shipment_id),
            Command::Shipment(ShipmentCommand::Get),
        )
        .await
        .map_err(|e| match e {
            AskError::Domain(DomainError::NotFound(_)) => not_found(),
            e => e.into(),
        })?;
    let Reply::Shipment(v) = reply else {
        return Err(Problem::internal("unexpected reply to Shipment::Get"));
    };
    if v.customer != caller.user_id && caller.role != Role::Admin {
        return Err(not_found());
    }
    Ok(Json(v.into()))
}

#[cfg(test)]
mod tests {
    use crate::testing;
    use agora_actors::cart::CartCommand;
    use agora_actors::client::{AskError, EntityClient, Pending};
    use agora_actors::order::OrderCommand;
    use agora_actors::product::{ProductCommand, ProductDetails, ProductView};
    use agora_actors::{Command, DomainError, EntityRef, Money, Reply};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    /// The ticket of the cart hold this client answers early.
    const HOLD: u64 = 7;

    /// Answers a checkout's asks from a script and records what the edge asked for.
    struct Scripted {
        cart: Vec<(String, u32)>,
        hold_stored: bool,
        log: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn note(&self, what: String) {
            self.log.lock().unwrap().push(what);
        }
    }

    #[async_trait::async_trait]
    impl EntityClient for Scripted {
        async fn ask(&self, _to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
            match cmd {
                Command::Order(OrderCommand::Get) => {
                    Err(DomainError::NotFound("order".into()).into())
                }
                Command::Product(ProductCommand::Get) => Ok(Reply::Product(ProductView {
                    sku: "SKU-1".into(),
                    details: ProductDetails {
                        name: "Kettle".into(),
                        description: String::new(),
                        category: "kitchen".into(),
                        price: Money::shop(2_000),
                        attributes: Default::default(),
                    },
                    created_at_ms: 0,
                    updated_at_ms: 0,
                    archived_at_ms: None,
                })),
                Command::Cart(CartCommand::Restore { .. }) => {
                    self.note("restore".into());
                    Ok(Reply::Cart(Vec::new()))
                }
                other => Err(AskError::Unavailable(format!("unscripted {other:?}"))),
            }
        }

        async fn ask_once(
            &self,
            to: EntityRef,
            cmd: Command,
            msg_id: String,
        ) -> Result<Reply, AskError> {
            testing::Nobody.ask_once(to, cmd, msg_id).await
        }

        async fn ask_early(
            &self,
            _to: EntityRef,
            _cmd: Command,
        ) -> Result<(Reply, Pending), AskError> {
            let pending = Pending {
                ticket: HOLD,
                hold: None,
            };
            Ok((Reply::Cart(self.cart.clone()), pending))
        }

        async fn ask_after(
            &self,
            _to: EntityRef,
            _cmd: Command,
            after: Pending,
        ) -> Result<Reply, AskError> {
            self.note(format!("placed after {}", after.ticket));
            // Refused outright, so the checkout ends here and gives the lines back.
            Err(DomainError::IdempotencyMismatch.into())
        }

        async fn durable(&self, change: Pending) -> Result<(), AskError> {
            self.note(format!("durable {}", change.ticket));
            if self.hold_stored {
                Ok(())
            } else {
                Err(AskError::Unavailable("the hold was not stored".into()))
            }
        }
    }

    /// Checks out as `u-1` against `client`: the status and what the edge asked for.
    async fn checkout(cart: Vec<(String, u32)>, hold_stored: bool) -> (StatusCode, Vec<String>) {
        let client = Arc::new(Scripted {
            cart,
            hold_stored,
            log: Mutex::new(Vec::new()),
        });
        let state = testing::state(client.clone());
        let token = state.keys.issue("u-1", "customer", 1_700_000_000).unwrap();
        let body = serde_json::json!({
            "payment": {"method": "card", "card_number": "4242424242424242"},
            "shipping_address": {"name": "Asha Rao", "line1": "12 MG Road", "city": "Bengaluru",
                                 "postal_code": "560001", "country": "IN"},
        });
        let req = Request::post("/api/v1/orders")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "k-1")
            .body(Body::from(body.to_string()))
            .unwrap();
        let status = crate::router(state).oneshot(req).await.unwrap().status();
        let log = client.log.lock().unwrap().clone();
        (status, log)
    }

    #[tokio::test]
    async fn an_empty_cart_is_answered_only_once_its_hold_is_durable() {
        let (status, log) = checkout(Vec::new(), true).await;
        assert_eq!(
            (status, log),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![format!("durable {HOLD}")]
            )
        );
        // A hold that never became durable: the cart seen may not exist, so no 422.
        let (status, _) = checkout(Vec::new(), false).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn the_placement_names_the_pending_cart_hold() {
        let (status, log) = checkout(vec![("SKU-1".into(), 2)], true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            log,
            vec![format!("placed after {HOLD}"), "restore".to_string()]
        );
    }
}
