//! Simulated users: shoppers who browse, fill carts, check out with idempotency keys, retry
//! unknown outcomes with the same key, sometimes double-submit with a new key, and cancel;
//! and an admin who creates the catalog and receives stock. Every operation is recorded as
//! invoke → ok / fail / unknown with virtual timestamps.

use crate::host::{ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::net::{http, Answer, ADMIN_PORT, HTTP_PORT};
use crate::seed::Stream;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

mod operator;
pub use operator::{operator, Chore, ChoreQueue, Minted, MAP_GROUP_LEFT};

/// SKUs the simulation sells (few, so shoppers contend for stock).
pub const SKUS: [&str; 4] = ["SIM-A", "SIM-B", "SIM-C", "SIM-D"];
/// Units of each SKU received when the catalog is created.
pub const INITIAL_STOCK: u64 = 30;
/// How long a client waits for one answer before calling the outcome unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// How often a request answered 429 is sent in all.
const RATE_LIMITED_TRIES: usize = 3;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Answered with success.
    Ok,
    /// Answered with a definite refusal.
    Fail,
    /// No answer, or an answer that does not say (timeouts, 5xx): it may take effect later
    /// or never.
    Unknown,
}

/// One client operation.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// Who.
    pub client: String,
    /// What: register, login, browse, add, checkout, cancel, receive, create.
    pub kind: &'static str,
    /// Virtual ms when it was sent.
    pub invoke_ms: u64,
    /// Virtual ms when it ended.
    pub end_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Status code (0: no answer).
    pub status: u16,
    /// The Idempotency-Key it was sent with (a checkout, refund or top-up).
    pub key: Option<String>,
    /// The order it concerns.
    pub order_id: Option<String>,
    /// The SKU it concerns.
    pub sku: Option<String>,
    /// Units.
    pub quantity: u64,
    /// The order status the answer showed (checkout, cancel and order reads).
    pub status_seen: Option<String>,
    /// The answer said it replays an earlier one (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// What a 2xx answer showed of the entity, for the linearizability checkers. Left out
    /// of the serialised history, so the trace hash is what it was before it was recorded.
    #[serde(skip)]
    pub shown: Shown,
    /// Why a 5xx answer refused (its problem's detail, numbers masked), for the run's
    /// summary; left out of the serialised history like `shown`.
    #[serde(skip)]
    pub refused_why: Option<String>,
}

/// The detail of a 5xx answer's problem with every run of digits masked as `N`, so that
/// answers refused for the same reason count together ("shard N is not hosted here").
pub fn refusal_reason(answer: &crate::net::Answer) -> Option<String> {
    if answer.status < 500 {
        return None;
    }
    let detail = answer.body.get("detail").and_then(Value::as_str)?;
    let mut masked = String::with_capacity(detail.len());
    let mut in_number = false;
    for c in detail.chars() {
        let digit = c.is_ascii_digit();
        if !digit {
            masked.push(c);
        } else if !in_number {
            masked.push('N');
        }
        in_number = digit;
    }
    Some(masked)
}

/// What an answer showed of an entity besides an order's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Shown {
    /// Nothing the checkers read.
    #[default]
    Nothing,
    /// A stock receipt's answer: units ever received (`on_hand + sold`; the simulated admin
    /// writes nothing off).
    StockReceived(u64),
    /// A wallet's balance (a top-up's answer, or a read of the wallet), minor units.
    WalletBalance(u64),
    /// A cart's lines (an add's answer): SKU and units, by SKU.
    Cart(Vec<(String, u32)>),
    /// The problem type a checkout's 4xx answer named (`/problems/out-of-stock`, …).
    Refused(String),
}

impl Shown {
    /// What the 2xx answer `body` to an operation of `kind` shows.
    fn of(kind: &str, body: &Value) -> Self {
        let field = |name: &str| body.get(name).and_then(Value::as_u64);
        match kind {
            "receive" | STOCK_READ => match (field("on_hand"), field("sold")) {
                (Some(on_hand), Some(sold)) => Shown::StockReceived(on_hand + sold),
                _ => Shown::Nothing,
            },
            TOP_UP | WALLET_READ => body
                .get("balance")
                .and_then(|b| b.get("amount_minor"))
                .and_then(Value::as_u64)
                .map_or(Shown::Nothing, Shown::WalletBalance),
            "add" => body
                .get("items")
                .and_then(Value::as_array)
                .map_or(Shown::Nothing, |items| Shown::Cart(cart_lines(items))),
            _ => Shown::Nothing,
        }
    }

    /// What a 4xx answer to an operation of `kind` shows: a checkout's problem type.
    fn of_refusal(kind: &str, body: &Value) -> Self {
        match (kind, body.get("type").and_then(Value::as_str)) {
            ("checkout", Some(problem)) => Shown::Refused(problem.to_string()),
            _ => Shown::Nothing,
        }
    }
}

/// A cart's lines as its answer lists them, by SKU.
fn cart_lines(items: &[Value]) -> Vec<(String, u32)> {
    let mut lines: Vec<(String, u32)> = items
        .iter()
        .filter_map(|i| {
            let sku = i.get("sku")?.as_str()?.to_string();
            let units = u32::try_from(i.get("quantity")?.as_u64()?).ok()?;
            Some((sku, units))
        })
        .collect();
    lines.sort();
    lines
}

/// The shared record of every operation, in completion order.
pub type History = Rc<RefCell<Vec<Op>>>;

/// Whether new work may start (off during healing).
pub type LoadSwitch = Rc<Cell<bool>>;

fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

/// A client's view of the cluster: which node it talks to, its token, its stream.
struct Session {
    name: String,
    nodes: Vec<u64>,
    node: usize,
    token: Option<String>,
    rng: Stream,
    history: History,
}

#[derive(Clone)]
struct Request<'a> {
    port: u16,
    kind: &'static str,
    method: &'a str,
    path: String,
    body: Option<Value>,
    key: Option<String>,
    sku: Option<String>,
    quantity: u64,
}

impl<'a> Request<'a> {
    /// A request to the shop API with no body, key or SKU.
    fn new(kind: &'static str, method: &'a str, path: String) -> Self {
        Self {
            port: HTTP_PORT,
            kind,
            method,
            path,
            body: None,
            key: None,
            sku: None,
            quantity: 0,
        }
    }

    fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn key(mut self, key: String) -> Self {
        self.key = Some(key);
        self
    }

    fn sku(mut self, sku: String, quantity: u64) -> Self {
        self.sku = Some(sku);
        self.quantity = quantity;
        self
    }

    fn quantity(mut self, quantity: u64) -> Self {
        self.quantity = quantity;
        self
    }
}

impl Session {
    fn new(name: String, nodes: Vec<u64>, rng: Stream, history: History) -> Self {
        let mut s = Self {
            name,
            nodes,
            node: 0,
            token: None,
            rng,
            history,
        };
        s.node = s.rng.random_range(0..s.nodes.len());
        s
    }

    /// Sends `r`; a 429 (a rate limit or a lockout: nothing was done) is recorded and sent
    /// again after its `Retry-After`, as a well-behaved client does, a few times at most.
    async fn send(&mut self, r: Request<'_>) -> (Outcome, Option<Answer>) {
        for _ in 1..RATE_LIMITED_TRIES {
            let (outcome, answer) = self.send_once(r.clone()).await;
            match &answer {
                Some(a) if a.status == 429 => {
                    let wait_secs = a.retry_after_secs.unwrap_or(1).clamp(1, 5);
                    tokio::time::sleep(Duration::from_secs(wait_secs)).await;
                }
                _ => return (outcome, answer),
            }
        }
        self.send_once(r).await
    }

    async fn send_once(&mut self, r: Request<'_>) -> (Outcome, Option<Answer>) {
        let invoke_ms = now_ms();
        // Recorded as unknown before it is sent: a request still in flight when the run
        // ends (its client stopped with it) may yet take effect, and the checkers must
        // allow for it (env seed 26: a receipt sent 0.6 s before the end, cut off from its
        // node, landed and was missing from the history).
        let slot = {
            let mut history = self.history.borrow_mut();
            history.push(self.op(&r, invoke_ms, None));
            history.len() - 1
        };
        let node = self.nodes[self.node];
        let headers: Vec<(&str, &str)> = r
            .key
            .as_deref()
            .map(|k| vec![("idempotency-key", k)])
            .unwrap_or_default();
        let sent = tokio::time::timeout(
            REQUEST_TIMEOUT,
            http(
                node,
                r.port,
                r.method,
                &r.path,
                self.token.as_deref(),
                &headers,
                r.body.as_ref(),
            ),
        )
        .await;
        let answer = match sent {
            Ok(Ok(a)) => Some(a),
            _ => None,
        };
        let op = self.op(&r, invoke_ms, Some(answer.as_ref()));
        let outcome = op.outcome;
        if outcome == Outcome::Unknown {
            // Try another node next time.
            self.node = self.rng.random_range(0..self.nodes.len());
        }
        self.history.borrow_mut()[slot] = op;
        (outcome, answer)
    }

    /// The record of request `r` sent at `invoke_ms`: `answered` is `None` while it is in
    /// flight (unknown), then `Some` of its answer, if any (none: unknown too).
    fn op(&self, r: &Request<'_>, invoke_ms: u64, answered: Option<Option<&Answer>>) -> Op {
        let answer = answered.flatten();
        let outcome = match answer {
            Some(a) if (200..300).contains(&a.status) => Outcome::Ok,
            // A 429 refused the request before it did anything.
            Some(a) if (400..500).contains(&a.status) && a.status != 408 => Outcome::Fail,
            _ => Outcome::Unknown,
        };
        let order_id = answer
            .and_then(|a| a.body.get("order_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                r.path
                    .strip_prefix("/api/v1/orders/")
                    .and_then(|p| p.split('/').next())
                    .map(str::to_string)
            });
        Op {
            client: self.name.clone(),
            kind: r.kind,
            invoke_ms,
            end_ms: if answered.is_some() {
                now_ms()
            } else {
                invoke_ms
            },
            outcome,
            status: answer.map_or(0, |a| a.status),
            key: r.key.clone(),
            order_id,
            sku: r.sku.clone(),
            quantity: r.quantity,
            status_seen: answer
                .filter(|a| (200..300).contains(&a.status) && r.kind != REFUND)
                .and_then(|a| a.body.get("status"))
                .and_then(Value::as_str)
                .map(str::to_string),
            replayed: answer.is_some_and(|a| a.replayed),
            shown: match answer {
                Some(a) if (200..300).contains(&a.status) => Shown::of(r.kind, &a.body),
                Some(a) if (400..500).contains(&a.status) => Shown::of_refusal(r.kind, &a.body),
                _ => Shown::Nothing,
            },
            refused_why: answer.and_then(refusal_reason),
        }
    }

    async fn pause(&mut self, lo_ms: u64, hi_ms: u64) {
        let ms = self.rng.random_range(lo_ms..=hi_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Shopper `index` picks its notification channels: one in three email only, one email
    /// and SMS, one WhatsApp (so every channel's sink and service is exercised). A profile
    /// change that fails is tried again a few times, then left: email stays.
    async fn choose_channels(&mut self, index: usize) {
        let channels = match index % 3 {
            0 => return,
            1 => json!(["email", "sms"]),
            _ => json!(["whatsapp"]),
        };
        let body =
            json!({"phone": format!("+9198450{index:05}"), "notification_channels": channels});
        for _attempt in 0..3 {
            let request = Request::new("channels", "PATCH", "/api/v1/me".into()).body(body.clone());
            if self.send(request).await.0 == Outcome::Ok {
                return;
            }
            self.pause(200, 1_000).await;
        }
    }

    /// Logs in (registering first when `register`), retrying until it works.
    async fn sign_in(&mut self, email: &str, password: &str, register: bool) {
        let mut registered = !register;
        loop {
            if !registered {
                let body = json!({"email": email, "password": password, "name": self.name});
                let (o, a) = self
                    .send(Request::new("register", "POST", "/api/v1/users".into()).body(body))
                    .await;
                registered = o == Outcome::Ok || a.is_some_and(|a| a.status == 409);
            }
            if registered {
                let body = json!({"email": email, "password": password});
                let (o, a) = self
                    .send(Request::new("login", "POST", "/api/v1/auth/login".into()).body(body))
                    .await;
                if let (Outcome::Ok, Some(a)) = (o, a) {
                    if let Some(t) = a.body.get("access_token").and_then(Value::as_str) {
                        self.token = Some(t.to_string());
                        return;
                    }
                }
            }
            self.pause(200, 1_000).await;
        }
    }
}

/// The admin: creates the catalog, receives the initial stock, then restocks now and then.
pub async fn admin(
    seed: u64,
    nodes: Vec<u64>,
    history: History,
    load: LoadSwitch,
) -> turmoil::Result {
    let mut s = Session::new(
        "admin".into(),
        nodes,
        Stream::new(seed, "client-admin"),
        history,
    );
    s.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD, false).await;
    for sku in SKUS {
        loop {
            let body = json!({
                "sku": sku, "name": format!("Simulated {sku}"), "description": "sim",
                "category": "sim", "price": {"amount_minor": 1_000, "currency": "INR"},
            });
            let (o, a) = s
                .send(
                    Request::new("create", "POST", "/api/v1/products".into())
                        .body(body)
                        .sku(sku.into(), 0),
                )
                .await;
            if o == Outcome::Ok || a.is_some_and(|a| a.status == 409) {
                break;
            }
            s.pause(200, 800).await;
        }
        receive(&mut s, sku, INITIAL_STOCK).await;
    }
    while load.get() {
        s.pause(200, 1_500).await;
        if !load.get() {
            break;
        }
        let sku = SKUS[s.rng.random_range(0..SKUS.len())];
        let qty = s.rng.random_range(1..=3);
        let _ = receive_once(&mut s, sku, qty).await;
        if s.rng.random_range(0..3u8) == 0 {
            read_stock_anywhere(&mut s).await;
        }
    }
    Ok(())
}

/// The kind of the admin's read of a SKU's stock.
pub const STOCK_READ: &str = "stock-read";

/// Reads a random SKU's stock through a random node's edge (the stock checker's reads by
/// another path than the receipts').
async fn read_stock_anywhere(s: &mut Session) {
    let sku = SKUS[s.rng.random_range(0..SKUS.len())];
    s.node = s.rng.random_range(0..s.nodes.len());
    let read =
        Request::new(STOCK_READ, "GET", format!("/api/v1/inventory/{sku}")).sku(sku.into(), 0);
    let _ = s.send(read).await;
}

async fn receive_once(s: &mut Session, sku: &str, qty: u64) -> Outcome {
    s.send(
        Request::new(
            "receive",
            "POST",
            format!("/api/v1/inventory/{sku}/receive"),
        )
        .body(json!({"quantity": qty}))
        .sku(sku.into(), qty),
    )
    .await
    .0
}

/// Receives until one attempt is acknowledged (unknown attempts may also have landed: the
/// checker allows for them).
async fn receive(s: &mut Session, sku: &str, qty: u64) {
    while receive_once(s, sku, qty).await != Outcome::Ok {
        s.pause(200, 800).await;
    }
}

fn payment(rng: &mut Stream) -> Value {
    match rng.random_range(0..20u8) {
        0 | 1 => json!({"method": "card", "card_number": "4000000000000002"}),
        2 | 3 => json!({"method": "upi", "vpa": "success@upi"}),
        4 | 5 => json!({"method": "wallet"}),
        // The gateway never answers: the payment timeout (a durable timer) must end it.
        6 => json!({"method": "card", "card_number": "4000000000000119"}),
        _ => json!({"method": "card", "card_number": "4242424242424242"}),
    }
}

/// A shopper: waits for the catalog, then shops while the load switch is on.
pub async fn shopper(
    seed: u64,
    index: usize,
    nodes: Vec<u64>,
    history: History,
    load: LoadSwitch,
) -> turmoil::Result {
    let name = format!("shopper-{index}");
    let mut s = Session::new(name.clone(), nodes, Stream::new(seed, &name), history);
    s.pause(500, 3_000).await;
    let email = format!("{name}@sim.test");
    s.sign_in(&email, "sim-password-123", true).await;
    s.choose_channels(index).await;
    let mut n = 0u32;
    while load.get() {
        s.pause(100, 900).await;
        let _ = s
            .send(Request::new("browse", "GET", "/api/v1/products".into()))
            .await;
        let sku = SKUS[s.rng.random_range(0..SKUS.len())];
        let qty = s.rng.random_range(1..=3u64);
        let (added, _) = s
            .send(
                Request::new("add", "POST", "/api/v1/cart/items".into())
                    .body(json!({"sku": sku, "quantity": qty}))
                    .sku(sku.into(), qty),
            )
            .await;
        if added == Outcome::Fail || !load.get() {
            continue;
        }
        n += 1;
        let key = format!("{name}-{n}");
        // One order in ten goes to the courier's test city whose deliveries all fail: the
        // parcel is returned, restocked and refunded (SHIPPED → RETURNED → REFUNDED).
        let city = if s.rng.random_range(0..10u8) == 0 {
            "Nowhere"
        } else {
            "Bengaluru"
        };
        let courier = ["agora-post", "swift", "nightjar"][s.rng.random_range(0..3usize)];
        let body = json!({"payment": payment(&mut s.rng), "shipping": {"courier": courier},
            "shipping_address": {
            "name": "Asha Rao", "line1": "12 MG Road", "city": city,
            "postal_code": "560001", "country": "IN"}});
        let mut placed = None;
        for _attempt in 0..4 {
            let (o, a) = s
                .send(
                    Request::new("checkout", "POST", "/api/v1/orders".into())
                        .body(body.clone())
                        .key(key.clone()),
                )
                .await;
            match o {
                Outcome::Ok => {
                    placed = a.and_then(|a| a.body.get("order_id")?.as_str().map(str::to_string));
                    break;
                }
                Outcome::Fail => break,
                // Unknown: retry with the same key.
                Outcome::Unknown => s.pause(300, 1_500).await,
            }
        }
        let Some(order_id) = placed else { continue };
        match s.rng.random_range(0..10u8) {
            2..=4 => {
                // Look at the order again (a read the linearizability check uses).
                s.pause(0, 3_000).await;
                let _ = s
                    .send(Request::new(
                        "read",
                        "GET",
                        format!("/api/v1/orders/{order_id}"),
                    ))
                    .await;
            }
            0 => {
                // Double-submit with a new key (a second tab): must not reuse this cart.
                let (_o, _a) = s
                    .send(
                        Request::new("checkout", "POST", "/api/v1/orders".into())
                            .body(body.clone())
                            .key(format!("{key}-again")),
                    )
                    .await;
            }
            1 => {
                s.pause(0, 2_000).await;
                let _ = s
                    .send(Request::new(
                        "cancel",
                        "POST",
                        format!("/api/v1/orders/{order_id}/cancel"),
                    ))
                    .await;
            }
            5 => refund_when_delivered(&mut s, &order_id, &key).await,
            6 => retry_answered_checkout(&mut s, &body, &key).await,
            7 => top_up_and_read(&mut s, &key).await,
            _ => {}
        }
    }
    Ok(())
}

/// The kind of a checkout sent again under an answered key with another body (a client
/// bug): it must be refused.
pub const CHECKOUT_REUSED_KEY: &str = "checkout-reused-key";

/// A shopper whose client lost the 201 sends the same checkout again under its key (it must
/// be answered as a replay of the same order), then, like a buggy client, another body
/// under the same key (it must be refused, and change nothing).
async fn retry_answered_checkout(s: &mut Session, body: &Value, key: &str) {
    s.pause(0, 1_000).await;
    let again = Request::new("checkout", "POST", "/api/v1/orders".into())
        .body(body.clone())
        .key(key.to_string());
    let _ = s.send(again).await;
    let mut other = body.clone();
    other["shipping_address"]["name"] = json!("Someone Else");
    let reused = Request::new(CHECKOUT_REUSED_KEY, "POST", "/api/v1/orders".into())
        .body(other)
        .key(key.to_string());
    let _ = s.send(reused).await;
}

/// The kind of a shopper's refund request (its answer's `status` is the refund's, not the
/// order's: the history checks leave it out).
pub const REFUND: &str = "refund";

/// Reads the order every few seconds (up to ten times) until it is delivered, then asks for
/// a refund of one unit and then for everything left: the second must be bounded by what
/// the first took (the effect ledger sees what the gateway was asked to pay back).
async fn refund_when_delivered(s: &mut Session, order_id: &str, key: &str) {
    for _ in 0..10 {
        s.pause(2_000, 4_000).await;
        let read = Request::new("read", "GET", format!("/api/v1/orders/{order_id}"));
        let (outcome, answer) = s.send(read).await;
        let Some(order) = answer.filter(|_| outcome == Outcome::Ok).map(|a| a.body) else {
            continue;
        };
        match order.get("status").and_then(Value::as_str) {
            Some("DELIVERED") => {}
            // Not there yet, or no answer worth reading: ask again. A terminal order other
            // than delivered is never refunded.
            Some(
                "CANCELLED" | "EXPIRED" | "PAYMENT_FAILED" | "REFUNDED" | "RETURNED"
                | "REFUND_PENDING",
            ) => return,
            _ => continue,
        }
        let Some(sku) = order["lines"][0]["sku"].as_str().map(str::to_string) else {
            return;
        };
        let path = format!("/api/v1/orders/{order_id}/refunds");
        let one_unit = json!({"lines": [{"sku": sku, "quantity": 1}]});
        for (n, body) in [(1, one_unit), (2, json!({}))] {
            let request = Request::new(REFUND, "POST", path.clone())
                .body(body)
                .key(format!("{key}-refund-{n}"));
            // An unknown answer is asked again under the same key (it takes effect once).
            for _attempt in 0..3 {
                if s.send(request.clone()).await.0 != Outcome::Unknown {
                    break;
                }
                s.pause(300, 1_500).await;
            }
        }
        return;
    }
}

/// The kind of a shopper's wallet top-up (`key` its Idempotency-Key, `quantity` its amount).
pub const TOP_UP: &str = "top-up";

/// The kind of a shopper's read of their wallet.
pub const WALLET_READ: &str = "wallet";

/// Tops the wallet up (an unknown answer is asked again under the same key, which credits
/// once), then reads it back a moment later: answers the wallet's linearizability check
/// reads (`crate::models::wallets`).
async fn top_up_and_read(s: &mut Session, key: &str) {
    let amount_minor = s.rng.random_range(1..=50u64) * 100;
    let request = Request::new(TOP_UP, "POST", "/api/v1/me/wallet/top-up".into())
        .body(json!({ "amount_minor": amount_minor }))
        .key(format!("{key}-top-up"))
        .quantity(amount_minor);
    for _attempt in 0..3 {
        if s.send(request.clone()).await.0 != Outcome::Unknown {
            break;
        }
        s.pause(300, 1_500).await;
    }
    s.pause(0, 2_000).await;
    let _ = s
        .send(Request::new(WALLET_READ, "GET", "/api/v1/me/wallet".into()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, detail: &str) -> crate::net::Answer {
        crate::net::Answer {
            status,
            body: serde_json::json!({ "detail": detail }),
            replayed: false,
            retry_after_secs: None,
        }
    }

    #[test]
    fn a_refusal_reason_masks_numbers_and_only_5xx_answers_have_one() {
        assert_eq!(
            refusal_reason(&answer(503, "node 12 does not lead shard 7 now")).as_deref(),
            Some("node N does not lead shard N now")
        );
        assert_eq!(
            refusal_reason(&answer(503, "Node 4: 10.0.0.1:7000")).as_deref(),
            Some("Node N: N.N.N.N:N")
        );
        assert_eq!(refusal_reason(&answer(409, "order 5 is shipped")), None);
        let no_detail = crate::net::Answer {
            status: 503,
            body: serde_json::json!({}),
            replayed: false,
            retry_after_secs: None,
        };
        assert_eq!(refusal_reason(&no_detail), None);
    }
}
