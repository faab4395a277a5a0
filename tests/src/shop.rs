//! Shop helpers: polling for orders, carts, stock and metrics with deadlines, and the
//! request bodies the tests send.

use crate::*;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// Stock figures of one SKU as reported by the inventory API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inventory {
    /// Units physically in the warehouse (available + reserved).
    pub on_hand: u64,
    /// Units held by orders awaiting payment.
    pub reserved: u64,
    /// Units that can still be bought.
    pub available: u64,
    /// Units sold (paid).
    pub sold: u64,
}

impl Inventory {
    /// Parses `{on_hand, reserved, available, sold}`, panicking on missing fields.
    pub fn from_json(v: &Value) -> Self {
        let f = |name: &str| {
            v.get(name)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("inventory lacks unsigned field {name:?}: {v}"))
        };
        Inventory {
            on_hand: f("on_hand"),
            reserved: f("reserved"),
            available: f("available"),
            sold: f("sold"),
        }
    }

    /// available + reserved + sold (must equal received − written off).
    pub fn accounted(&self) -> u64 {
        self.available + self.reserved + self.sold
    }
}

/// Polls `f` every 50 ms until it returns `Ok`, panicking after `timeout` with the last `Err` text.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Status string of an order JSON ("" when missing).
pub fn status_of(order: &Value) -> &str {
    order.get("status").and_then(Value::as_str).unwrap_or("")
}

/// Statuses in an order's history, in order.
pub fn history_statuses(order: &Value) -> Vec<String> {
    order
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .filter_map(|e| e.get("status").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls GET order until its status is in `wanted`; fails fast if it ends in another terminal status.
pub async fn wait_for_order(client: &Client, order_id: &str, wanted: &[&str]) -> Value {
    wait_for_order_within(client, order_id, wanted, POLL_TIMEOUT).await
}

/// Like [`wait_for_order`] with an explicit deadline.
pub async fn wait_for_order_within(
    client: &Client,
    order_id: &str,
    wanted: &[&str],
    timeout: Duration,
) -> Value {
    let what = format!("order {order_id} to reach one of {wanted:?}");
    poll_until(&what, timeout, || async {
        let r = client.get(&format!("/api/v1/orders/{order_id}")).await;
        if r.status != 200 {
            return Err(format!("HTTP {} {}", r.status, r.text));
        }
        let status = status_of(&r.body).to_string();
        if wanted.contains(&status.as_str()) {
            return Ok(r.body);
        }
        if TERMINAL_ORDER_STATUSES.contains(&status.as_str()) {
            panic!(
                "order {order_id} reached terminal status {status} while waiting for {wanted:?}: {}",
                r.text
            );
        }
        Err(format!("status {status}; order {}", r.text))
    })
    .await
}

/// Polls the caller's notifications until `order_id` has every kind in `kinds`; returns its kinds.
pub async fn wait_for_notifications(
    client: &Client,
    order_id: &str,
    kinds: &[&str],
) -> Vec<String> {
    let what = format!("notifications {kinds:?} for order {order_id}");
    poll_until(&what, POLL_TIMEOUT, || async {
        let items = client.notifications().await;
        let have: Vec<String> = items
            .iter()
            .filter(|n| n.get("order_id").and_then(Value::as_str) == Some(order_id))
            .filter_map(|n| n.get("kind").and_then(Value::as_str).map(String::from))
            .collect();
        if kinds.iter().all(|k| have.iter().any(|h| h == k)) {
            Ok(have)
        } else {
            Err(format!("kinds so far {have:?}"))
        }
    })
    .await
}

/// Polls the cart until it holds no line for `sku`; returns the cart.
pub async fn wait_for_cart_without(client: &Client, sku: &str) -> Value {
    let what = format!("cart to lose its {sku} line after checkout");
    poll_until(&what, POLL_TIMEOUT, || async {
        let cart = client.cart().await;
        if cart_quantity(&cart, sku) == 0 {
            Ok(cart)
        } else {
            Err(cart.to_string())
        }
    })
    .await
}

/// Quantity of `sku` in a cart JSON (0 when absent).
pub fn cart_quantity(cart: &Value, sku: &str) -> u64 {
    cart.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|l| l.get("sku").and_then(Value::as_str) == Some(sku))
        .filter_map(|l| l.get("quantity").and_then(Value::as_u64))
        .sum()
}

/// Polls inventory (admin client) until `pred` holds; returns the last figures.
pub async fn wait_for_inventory<P>(admin: &Client, sku: &str, what: &str, pred: P) -> Inventory
where
    P: Fn(&Inventory) -> bool,
{
    let desc = format!("inventory of {sku}: {what}");
    poll_until(&desc, POLL_TIMEOUT, || async {
        let inv = admin.inventory(sku).await;
        if pred(&inv) {
            Ok(inv)
        } else {
            Err(format!("{inv:?}"))
        }
    })
    .await
}

/// Polls GET /api/v1/products/{sku} until it shows `available`; returns the product.
pub async fn wait_for_product_available(shop: &Client, sku: &str, available: u64) -> Value {
    let what = format!("product {sku} to show available == {available}");
    poll_until(&what, POLL_TIMEOUT, || async {
        let r = shop.get(&format!("/api/v1/products/{sku}")).await;
        if r.status == 200 && r.body["available"] == available {
            Ok(r.body)
        } else {
            Err(format!("HTTP {} {}", r.status, r.text))
        }
    })
    .await
}

/// `{method: "card", card_number}`.
pub fn card(number: &str) -> Value {
    json!({"method": "card", "card_number": number})
}

/// Waits (bounded by `POLL_TIMEOUT`) until counter `name` on `c`'s `/metrics` reaches
/// `at_least`; `what` names the wait in a timeout's message.
pub async fn wait_for_counter(c: &Client, name: &str, at_least: f64, what: &str) {
    poll_until(what, POLL_TIMEOUT, || async move {
        match counter(c, name).await {
            n if n >= at_least => Ok(()),
            n => Err(format!("{name} is {n}")),
        }
    })
    .await;
}

/// Sum of one counter (every label set) in the Prometheus text of `c`'s `/metrics`.
pub async fn counter(c: &Client, name: &str) -> f64 {
    let r = c.get("/metrics").await;
    r.text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `{method: "upi", vpa}`.
pub fn upi(vpa: &str) -> Value {
    json!({"method": "upi", "vpa": vpa})
}

/// `{method: "wallet"}`.
pub fn wallet() -> Value {
    json!({"method": "wallet"})
}

/// A valid shipping address.
pub fn shipping_address() -> Value {
    json!({
        "name": "Asha Rao",
        "line1": "12 MG Road",
        "city": "Bengaluru",
        "postal_code": "560001",
        "country": "IN",
    })
}

/// A checkout body with the given payment and a valid shipping address.
pub fn checkout_body(payment: Value) -> Value {
    json!({"payment": payment, "shipping_address": shipping_address()})
}

fn short_uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase()
}

/// A fresh SKU `T-<12 uppercase hex chars>`.
pub fn unique_sku() -> String {
    format!("T-{}", short_uuid())
}

/// A fresh email address.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// A fresh idempotency key.
pub fn unique_key() -> String {
    format!("key-{}", uuid::Uuid::new_v4())
}

/// Counts of each value in an iterator (handy for status histograms in messages).
pub fn histogram<I: IntoIterator<Item = String>>(items: I) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}
