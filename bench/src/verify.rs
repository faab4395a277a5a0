//! The check after a run: every acknowledged order must be readable from the node (the
//! admin may read any order), and the time from sending the checkout to CONFIRMED is taken
//! from the order's history (stamped by the node's clock, on this same machine).

use crate::api::{self, World};
use crate::stats::{Percentiles, PlacedOrder};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Orders read at once.
const PARALLEL: usize = 32;

/// Statuses at or past CONFIRMED.
const CONFIRMED_OR_LATER: [&str; 3] = ["CONFIRMED", "SHIPPED", "DELIVERED"];
/// Statuses that will not change any more (or not towards CONFIRMED).
const FINAL_OTHERWISE: [&str; 5] = [
    "CANCELLED",
    "EXPIRED",
    "REFUNDED",
    "REFUND_PENDING",
    "PAYMENT_FAILED",
];

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Orders acknowledged with 201 (warm-up and window).
    pub acknowledged: usize,
    /// Answered 404: acknowledged but not in the store. Must be 0.
    pub missing: usize,
    /// Other non-200 answers or transport errors, by status. Must be empty.
    pub unreadable: BTreeMap<String, u64>,
    /// Last status seen, by status.
    pub statuses: BTreeMap<String, u64>,
    /// Orders at or past CONFIRMED.
    pub confirmed: usize,
    /// Orders holding more than the one unit their visit added: they took a line left in
    /// the cart by the previous visit, whose `CheckedOut` had not reached the cart yet.
    pub extra_unit_orders: usize,
    /// Orders acknowledged in the measured window.
    pub in_window: usize,
    /// Of those, how many reached CONFIRMED before the check gave up waiting.
    pub in_window_confirmed: usize,
    /// Time from sending the checkout to CONFIRMED, over the orders of the window that
    /// reached it (see `in_window_confirmed`).
    pub time_to_confirmed: Option<Percentiles>,
    /// Seconds spent checking (including waiting for confirmations).
    pub took_s: f64,
}

impl Verification {
    /// Whether every acknowledged order was found.
    pub fn all_present(&self) -> bool {
        self.missing == 0 && self.unreadable.is_empty()
    }
}

/// One order's reading.
enum Seen {
    /// Not found.
    Missing,
    /// Not readable: the status (0: transport error).
    Unreadable(u16),
    /// Its status, when reached the ms timestamp of CONFIRMED, and its units.
    Found(String, Option<u64>, u64),
}

/// The ms timestamp of CONFIRMED in an order's history.
fn confirmed_at(order: &Value) -> Option<u64> {
    let history = order["history"].as_array()?;
    let at = history
        .iter()
        .find(|h| h["status"].as_str() == Some("CONFIRMED"))?["at"]
        .as_str()?;
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// Reads one order with the admin token.
async fn read(w: &World, id: &str) -> Seen {
    match api::get(
        &w.client,
        &format!("{}/orders/{id}", w.api),
        Some(&w.admin_token),
    )
    .await
    {
        Ok((200, body)) => {
            let v = api::json_of(&body);
            let status = v["status"].as_str().unwrap_or("?").to_string();
            let units = v["lines"].as_array().map_or(0, |ls| {
                ls.iter().filter_map(|l| l["quantity"].as_u64()).sum()
            });
            Seen::Found(status, confirmed_at(&v), units)
        }
        Ok((404, _)) => Seen::Missing,
        Ok((s, _)) => Seen::Unreadable(s),
        Err(_) => Seen::Unreadable(0),
    }
}

/// Reads `orders` (indices into `all`) `PARALLEL` at a time.
async fn read_all(
    w: &Arc<World>,
    all: &Arc<Vec<PlacedOrder>>,
    orders: Vec<usize>,
) -> Vec<(usize, Seen)> {
    let orders = Arc::new(orders);
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(orders.len())));
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (w, all, orders, next, out) = (
            w.clone(),
            all.clone(),
            orders.clone(),
            next.clone(),
            out.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&o) = orders.get(i) else { break };
                let seen = read(&w, &all[o].id).await;
                if let Ok(mut out) = out.lock() {
                    out.push((o, seen));
                }
            }
        }));
    }
    for wk in workers {
        let _ = wk.await;
    }
    let mut guard = out
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default();
    guard.sort_by_key(|(o, _)| *o);
    guard
}

/// Checks every order; waits up to `confirm_wait` for those not yet CONFIRMED.
pub async fn verify(
    w: &Arc<World>,
    orders: Vec<PlacedOrder>,
    confirm_wait: Duration,
) -> Verification {
    let started = Instant::now();
    let deadline = started + confirm_wait;
    let all = Arc::new(orders);
    let mut v = Verification {
        acknowledged: all.len(),
        ..Verification::default()
    };
    let mut last_status: Vec<Option<String>> = vec![None; all.len()];
    let mut confirmed_ms: Vec<Option<u64>> = vec![None; all.len()];
    let mut units: Vec<u64> = vec![0; all.len()];
    let mut pending: Vec<usize> = (0..all.len()).collect();
    while !pending.is_empty() {
        let mut again = Vec::new();
        for (o, seen) in read_all(w, &all, pending).await {
            match seen {
                Seen::Missing => v.missing += 1,
                Seen::Unreadable(s) => {
                    let key = if s == 0 {
                        "transport".into()
                    } else {
                        s.to_string()
                    };
                    *v.unreadable.entry(key).or_default() += 1;
                }
                Seen::Found(status, at, n) => {
                    units[o] = n;
                    let done = CONFIRMED_OR_LATER.contains(&status.as_str())
                        || FINAL_OTHERWISE.contains(&status.as_str());
                    confirmed_ms[o] = at;
                    last_status[o] = Some(status);
                    if !done {
                        again.push(o);
                    }
                }
            }
        }
        if again.is_empty() || Instant::now() >= deadline {
            break;
        }
        pending = again;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for s in last_status.into_iter().flatten() {
        *v.statuses.entry(s).or_default() += 1;
    }
    let mut h = crate::stats::histogram(3);
    v.in_window = all.iter().filter(|o| o.in_window).count();
    v.extra_unit_orders = units.iter().filter(|n| **n > 1).count();
    for (o, at) in all.iter().zip(&confirmed_ms) {
        if let Some(at) = at {
            v.confirmed += 1;
            v.in_window_confirmed += usize::from(o.in_window);
            if let (true, Some(h)) = (o.in_window, h.as_mut()) {
                let _ = h.record(at.saturating_sub(o.sent_wall_ms).max(1) * 1000);
            }
        }
    }
    v.time_to_confirmed = h.filter(|h| !h.is_empty()).map(|h| Percentiles::ms(&h));
    v.took_s = started.elapsed().as_secs_f64();
    v
}

#[cfg(test)]
mod tests {
    use super::confirmed_at;
    use serde_json::json;

    #[test]
    fn finds_the_confirmation_time_in_the_history() {
        let order = json!({"history": [
            {"status": "PENDING", "at": "2024-05-01T10:00:00.100Z"},
            {"status": "CONFIRMED", "at": "2024-05-01T10:00:00.250Z"}]});
        let pending = confirmed_at(
            &json!({"history": [{"status": "PENDING", "at": "2024-05-01T10:00:00.100Z"}]}),
        );
        assert_eq!(confirmed_at(&order), Some(1_714_557_600_250));
        assert_eq!(pending, None);
    }
}
