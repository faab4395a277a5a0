//! The scenarios' steps: a shopper visit (add to cart, check out with a succeeding card),
//! product reads, listings and searches, and how each scenario mixes them.

use crate::api::{self, World};
use crate::rng::Rng;
use crate::stats::{Op, Recorder};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Share of listing/search requests among browse requests.
const LISTING_SHARE: f64 = 0.3;

/// The problem type of a checkout of an empty cart.
const EMPTY_CART: &str = "/problems/empty-cart";

/// Numbers the idempotency keys of this process.
static KEY_SEQ: AtomicU64 = AtomicU64::new(0);

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Shoppers loop: add to cart, check out (card 4242…); time to 201 and to CONFIRMED.
    Checkout,
    /// Product reads (70%) and listings/searches (30%).
    Browse,
    /// Browse-heavy, with a share of shopper visits (`--checkout-share`).
    Mixed,
    /// Product reads only (the figure compared with bare axum).
    Product,
}

impl Scenario {
    /// The operation whose latency the chart follows.
    pub fn primary(self) -> Op {
        match self {
            Scenario::Checkout => Op::Checkout,
            Scenario::Browse | Scenario::Mixed | Scenario::Product => Op::Product,
        }
    }

    /// Whether its virtual users must be registered shoppers.
    pub fn needs_users(self) -> bool {
        matches!(self, Scenario::Checkout | Scenario::Mixed)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Checkout => "checkout",
            Scenario::Browse => "browse",
            Scenario::Mixed => "mixed",
            Scenario::Product => "product",
        }
    }
}

/// Milliseconds since the Unix epoch (the node stamps its order history with the same clock).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The status of an answer (0 for a transport error); a failed answer's body is sampled.
fn status_of(r: &reqwest::Result<api::Answer>, op: Op, rec: &Recorder) -> u16 {
    match r {
        Ok((s, body)) => {
            if !(200..300).contains(s) {
                rec.sample(op, *s, body);
            }
            *s
        }
        Err(e) => {
            rec.sample(op, 0, e.to_string().as_bytes());
            0
        }
    }
}

/// One shopper visit: add a random product to `user`'s cart, then check out. Returns the
/// checkout's status (or the add-to-cart's, if that failed).
pub async fn visit(w: &World, user: usize, rng: &mut Rng, rec: &Recorder) -> u16 {
    let Some(token) = w.users.get(user) else {
        return 0;
    };
    let item = &w.catalog[rng.below(w.catalog.len())];
    let body = json!({"sku": item.sku, "quantity": 1}).to_string();
    let started = Instant::now();
    let added = api::post(
        &w.client,
        &format!("{}/cart/items", w.api_for(user)),
        Some(token),
        body,
        None,
    )
    .await;
    let status = status_of(&added, Op::AddToCart, rec);
    rec.record(Op::AddToCart, started, status);
    if status != 200 {
        return status;
    }
    let key = format!(
        "{}-{user}-{}",
        w.tag,
        KEY_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let sent_wall_ms = wall_ms();
    let started = Instant::now();
    let placed = api::post(
        &w.client,
        &format!("{}/orders", w.api_for(user)),
        Some(token),
        w.checkout_body.clone(),
        Some(&key),
    )
    .await;
    if let Ok((422, body)) = &placed {
        if api::json_of(body)["type"].as_str() == Some(EMPTY_CART) {
            rec.cart_race();
            return 422;
        }
    }
    let status = status_of(&placed, Op::Checkout, rec);
    rec.record(Op::Checkout, started, status);
    if let Ok((201, body)) = &placed {
        if let Some(id) = api::json_of(body)["order_id"].as_str() {
            rec.order(id.to_string(), sent_wall_ms);
        }
    }
    status
}

/// Reads a random product; latency counts from `started`.
pub async fn product_read(w: &World, rng: &mut Rng, rec: &Recorder, started: Instant) -> u16 {
    let item = &w.catalog[rng.below(w.catalog.len())];
    let base = w.api_for(rng.below(w.apis.len().max(1)));
    let r = api::get(&w.client, &format!("{}/products/{}", base, item.sku), None).await;
    let status = status_of(&r, Op::Product, rec);
    rec.record(Op::Product, started, status);
    status
}

/// Lists or searches the catalog; latency counts from `started`.
pub async fn listing(w: &World, rng: &mut Rng, rec: &Recorder, started: Instant) -> u16 {
    let item = &w.catalog[rng.below(w.catalog.len())];
    let query = api::listing_query(item, rng.below(3));
    let base = w.api_for(rng.below(w.apis.len().max(1)));
    let r = api::get(&w.client, &format!("{base}/products?{query}"), None).await;
    let status = status_of(&r, Op::Listing, rec);
    rec.record(Op::Listing, started, status);
    status
}

/// A browse request: a product read or a listing/search.
pub async fn browse(w: &World, rng: &mut Rng, rec: &Recorder, started: Instant) -> u16 {
    if rng.chance(LISTING_SHARE) {
        listing(w, rng, rec, started).await
    } else {
        product_read(w, rng, rec, started).await
    }
}

#[cfg(test)]
mod tests {
    use super::Scenario;
    use crate::stats::Op;

    #[test]
    fn checkout_follows_checkout_latency() {
        assert_eq!(Scenario::Checkout.primary(), Op::Checkout);
        assert!(Scenario::Mixed.needs_users());
        assert!(!Scenario::Browse.needs_users());
    }
}
