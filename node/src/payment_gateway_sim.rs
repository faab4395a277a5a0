//! `agora payment-gateway-sim`: a loopback payment gateway that decides like the
//! in-process simulated gateway (same test cards, opened from their tokens with the
//! simulator's own card key) and delivers each result as a webhook signed with HMAC-SHA256,
//! after a random delay, sometimes twice, sometimes with a late `charge.pending` after the
//! result (configurable percentages). Each merchant has its own API key, webhook URL and
//! ledger; amounts are bounded and sums checked, and a poisoned ledger lock is recovered
//! rather than left to fail every later call. The node's client is `payment_http`.

use crate::payment_http::{
    Accepted, ChargeBody, RefundBody, TokenBody, WebhookEndpointBody, MIN_API_KEY_BYTES,
};
use agora_actors::card::{CardRef, CardVault};
use agora_actors::gateway::decide;
use agora_actors::limits::MAX_AMOUNT_MINOR;
use agora_actors::money::SHOP_CURRENCY;
use agora_actors::seams::{Clock, RandomSource};
use agora_http_edge::webhook::{self, WebhookData, WebhookEvent};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One merchant of the gateway simulator (its `Debug` leaves the key out).
#[derive(Clone, PartialEq, Eq)]
pub struct MerchantConfig {
    /// The merchant's id (in logs).
    pub id: String,
    /// The API key it calls with (at least `MIN_API_KEY_BYTES`).
    pub api_key: String,
    /// Where its events go; when `None`, the merchant registers one with
    /// `PUT /v1/webhook_endpoint`.
    pub webhook_url: Option<String>,
}

impl std::fmt::Debug for MerchantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantConfig")
            .field("id", &self.id)
            .field("api_key", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .finish()
    }
}

/// Why a merchant list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerchantsError {
    /// An entry is not `id=key`.
    #[error("merchant entry {0:?} is not id=api_key")]
    Malformed(String),
    /// A key is too short.
    #[error("the API key of merchant {0} is shorter than {MIN_API_KEY_BYTES} bytes")]
    ShortKey(String),
    /// Two merchants share an id or a key.
    #[error("merchant {0} appears twice, or shares its API key")]
    Duplicate(String),
    /// No merchant at all.
    #[error("no merchant: set AGORA_GATEWAY_MERCHANTS (id=api_key, comma-separated)")]
    Empty,
}

/// Parses `id=api_key,id=api_key` (the value of `AGORA_GATEWAY_MERCHANTS`) into merchants
/// without webhook URLs.
pub fn parse_merchants(list: &str) -> Result<Vec<MerchantConfig>, MerchantsError> {
    let mut out: Vec<MerchantConfig> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, key)) = entry.split_once('=') else {
            return Err(MerchantsError::Malformed(entry.chars().take(16).collect()));
        };
        let (id, key) = (id.trim(), key.trim());
        if id.is_empty() {
            return Err(MerchantsError::Malformed(String::new()));
        }
        if key.len() < MIN_API_KEY_BYTES {
            return Err(MerchantsError::ShortKey(id.to_string()));
        }
        if out.iter().any(|m| m.id == id || m.api_key == key) {
            return Err(MerchantsError::Duplicate(id.to_string()));
        }
        out.push(MerchantConfig {
            id: id.to_string(),
            api_key: key.to_string(),
            webhook_url: None,
        });
    }
    if out.is_empty() {
        return Err(MerchantsError::Empty);
    }
    Ok(out)
}

/// How the gateway simulator behaves.
#[derive(Debug, Clone)]
pub struct GatewaySimConfig {
    /// The webhook signing secret (shared with the shops).
    pub secret: Vec<u8>,
    /// The merchants allowed to call, each with its own API key and webhook URL.
    pub merchants: Vec<MerchantConfig>,
    /// Shortest delay before an event is sent (ms).
    pub min_delay_ms: u64,
    /// Longest delay before an event is sent (ms).
    pub max_delay_ms: u64,
    /// Percentage of events sent twice (same event id).
    pub duplicate_percent: u32,
    /// Percentage of charges whose `charge.pending` event is sent after the result.
    pub reorder_percent: u32,
    /// The key card tokens are sealed with (at least 32 bytes; keep it to keep tokens valid
    /// across restarts).
    pub card_key: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Intent {
    id: String,
    events: Vec<WebhookEvent>,
}

/// Money moved for one order of one merchant (each sum at most `MAX_AMOUNT_MINOR`).
#[derive(Debug, Clone, Copy, Default)]
struct Moved {
    charged_minor: u64,
    refunded_minor: u64,
}

/// A merchant's idempotency key or order id, scoped to the merchant.
type Scoped = (String, String);

#[derive(Default)]
struct Ledger {
    /// Intents by merchant and idempotency key.
    intents: BTreeMap<Scoped, Intent>,
    /// Money moved by merchant and order.
    orders: BTreeMap<Scoped, Moved>,
    /// Webhook URL by merchant.
    webhook_urls: BTreeMap<String, String>,
}

/// Adds `amount_minor` to `sum_minor` if the result stays within `MAX_AMOUNT_MINOR`.
fn add_bounded(sum_minor: u64, amount_minor: u64) -> Option<u64> {
    sum_minor
        .checked_add(amount_minor)
        .filter(|total| *total <= MAX_AMOUNT_MINOR)
}

struct Sim {
    config: GatewaySimConfig,
    /// Merchant id by the SHA-256 of its API key.
    merchants: BTreeMap<[u8; 32], String>,
    ledger: Mutex<Ledger>,
    rng: Arc<dyn RandomSource>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    /// Card tokens: made by `POST /v1/tokens`, opened to decide a charge.
    cards: CardVault,
}

type Shared = Arc<Sim>;

fn event_id(key: &str, kind: &str) -> String {
    format!(
        "evt_{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{key}\n{kind}").as_bytes())
    )
}

fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Sim {
    fn percent(&self, p: u32) -> bool {
        self.rng.next_u64() % 100 < u64::from(p)
    }

    fn delay(&self) -> Duration {
        let lo = self.config.min_delay_ms;
        let hi = self.config.max_delay_ms.max(lo);
        let span = (hi - lo).saturating_add(1);
        Duration::from_millis(lo.saturating_add(self.rng.next_u64() % span))
    }

    fn event(&self, key: &str, kind: &str, data: WebhookData) -> WebhookEvent {
        WebhookEvent {
            id: event_id(key, kind),
            kind: kind.to_string(),
            created: self.clock.now_ms() / 1000,
            data,
        }
    }

    /// The ledger, also after a panic elsewhere while it was held: every change to it is
    /// made by whole-value inserts after all checks, so a panic never leaves it half-changed,
    /// and one failed call must not fail every later one.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| {
            tracing::error!("gateway ledger lock was poisoned by a panic: recovered");
            self.ledger.clear_poison();
            PoisonError::into_inner(poisoned)
        })
    }

    /// The merchant the `Authorization: Bearer <key>` header names, if any.
    fn merchant(&self, headers: &HeaderMap) -> Result<String, Problem> {
        let key = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| problem(StatusCode::UNAUTHORIZED, "missing API key"))?;
        self.merchants
            .get(&key_digest(key.trim()))
            .cloned()
            .ok_or_else(|| problem(StatusCode::UNAUTHORIZED, "unknown API key"))
    }

    /// The webhook URL of `merchant`, or 428 when it has none yet.
    fn webhook_url(&self, merchant: &str) -> Result<String, Problem> {
        self.ledger()
            .webhook_urls
            .get(merchant)
            .cloned()
            .ok_or_else(|| {
                problem(
                    StatusCode::PRECONDITION_REQUIRED,
                    "no webhook endpoint: PUT /v1/webhook_endpoint first",
                )
            })
    }

    /// Sends `events` to `url` in order, each after its own delay (so they may overtake each
    /// other), some twice; with `reorder`, the first event is sent after the last one.
    fn dispatch(self: &Arc<Self>, url: String, mut events: Vec<WebhookEvent>) {
        if events.len() > 1 && self.percent(self.config.reorder_percent) {
            let first = events.remove(0);
            events.push(first);
        }
        let mut at = Duration::ZERO;
        for ev in events {
            at += self.delay();
            let times = if self.percent(self.config.duplicate_percent) {
                2
            } else {
                1
            };
            for n in 0..times {
                let sim = self.clone();
                let url = url.clone();
                let ev = ev.clone();
                let wait = at + Duration::from_millis(5 * n);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    sim.send(&url, &ev).await;
                });
            }
        }
    }

    /// Delivers one event, retrying on failure (a signature is made per attempt, with the
    /// time of that attempt).
    async fn send(&self, url: &str, ev: &WebhookEvent) {
        let Ok(body) = serde_json::to_vec(ev) else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 0..8 {
            let sig = webhook::sign(&self.config.secret, self.clock.now_ms() / 1000, &body);
            let sent = self
                .client
                .post(url)
                .header(webhook::SIGNATURE_HEADER, sig)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(event = %ev.id, status = %r.status(), "webhook refused");
                    return;
                }
                Ok(r) => {
                    tracing::debug!(event = %ev.id, attempt, status = %r.status(), "webhook retry")
                }
                Err(e) => tracing::debug!(event = %ev.id, attempt, error = %e, "webhook retry"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::warn!(event = %ev.id, "webhook given up");
    }
}

fn problem(status: StatusCode, detail: &str) -> Problem {
    (
        status,
        Json(serde_json::json!({"title": "refused", "status": status.as_u16(), "detail": detail})),
    )
}

type Answer = Result<Json<Accepted>, Problem>;

/// The answer to an accepted call: the result comes as a webhook.
fn pending(intent_id: String) -> Answer {
    Ok(Json(Accepted {
        id: intent_id,
        status: "pending".into(),
    }))
}

type Problem = (StatusCode, Json<serde_json::Value>);

impl Sim {
    /// The intent already made for `merchant`'s idempotency key `key` (and `false`), or the
    /// one `create` makes from the ledger, recorded under `key` (and `true`).
    fn intent_once(
        &self,
        merchant: &str,
        key: &str,
        create: impl FnOnce(&mut Ledger) -> Result<Intent, Problem>,
    ) -> Result<(Intent, bool), Problem> {
        let mut ledger = self.ledger();
        let scoped = (merchant.to_string(), key.to_string());
        if let Some(i) = ledger.intents.get(&scoped) {
            return Ok((i.clone(), false));
        }
        let intent = create(&mut ledger)?;
        ledger.intents.insert(scoped, intent.clone());
        Ok((intent, true))
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200
}

fn valid_amount(amount_minor: u64) -> Result<(), Problem> {
    if (1..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
        Ok(())
    } else {
        Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_minor must be 1..=10000000000000",
        ))
    }
}

fn too_much(what: &str) -> Problem {
    problem(StatusCode::UNPROCESSABLE_ENTITY, what)
}

/// The events of a new charge, recording a success in `ledger` (bounded, checked).
fn charge_events(
    sim: &Sim,
    ledger: &mut Ledger,
    merchant: &str,
    b: &ChargeBody,
) -> Result<Vec<WebhookEvent>, Problem> {
    let data = |reason: Option<String>| WebhookData {
        order_id: b.order_id.clone(),
        amount_minor: b.amount_minor,
        currency: Some(b.currency.clone()),
        payment_id: Some(b.key.clone()),
        method: Some(b.method.name().to_string()),
        refund_id: None,
        reason,
    };
    let mut events = vec![sim.event(&b.key, "charge.pending", data(None))];
    match decide(&b.method, &sim.cards) {
        Some(Ok(())) => {
            let order = (merchant.to_string(), b.order_id.clone());
            let mut moved = ledger.orders.get(&order).copied().unwrap_or_default();
            moved.charged_minor = add_bounded(moved.charged_minor, b.amount_minor)
                .ok_or_else(|| too_much("the charges of this order exceed the bound"))?;
            ledger.orders.insert(order, moved);
            events.push(sim.event(&b.key, "charge.succeeded", data(None)));
        }
        Some(Err(reason)) => events.push(sim.event(&b.key, "charge.failed", data(Some(reason)))),
        None => {} // never answers
    }
    Ok(events)
}

async fn charge(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<ChargeBody>,
) -> Answer {
    let merchant = sim.merchant(&headers)?;
    if !valid_id(&b.key) || !valid_id(&b.order_id) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad key or order id",
        ));
    }
    valid_amount(b.amount_minor)?;
    if b.currency != SHOP_CURRENCY {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported currency",
        ));
    }
    let url = sim.webhook_url(&merchant)?;
    let (intent, fresh) = sim.intent_once(&merchant, &b.key, |ledger| {
        Ok(Intent {
            id: format!("pi_{}", &event_id(&b.key, "intent")[4..]),
            events: charge_events(&sim, ledger, &merchant, &b)?,
        })
    })?;
    if fresh {
        sim.dispatch(url, intent.events.clone());
    } else if let Some(last) = intent.events.last() {
        // A repeated call (the shop lost the answer): the result again, same event id.
        sim.dispatch(url, vec![last.clone()]);
    }
    pending(intent.id)
}

/// Exchanges a card number for a token, the last four digits and a fingerprint.
async fn tokens(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<TokenBody>,
) -> Result<Json<CardRef>, Problem> {
    sim.merchant(&headers)?;
    sim.cards
        .tokenise(&b.number)
        .map(Json)
        .map_err(|e| problem(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))
}

async fn refund(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<RefundBody>,
) -> Answer {
    let merchant = sim.merchant(&headers)?;
    if !valid_id(&b.key) || !valid_id(&b.order_id) || !valid_id(&b.refund_id) {
        return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "bad key or id"));
    }
    valid_amount(b.amount_minor)?;
    let url = sim.webhook_url(&merchant)?;
    let (intent, _) = sim.intent_once(&merchant, &b.key, |ledger| {
        let order = (merchant.clone(), b.order_id.clone());
        let mut moved = ledger.orders.get(&order).copied().unwrap_or_default();
        moved.refunded_minor = add_bounded(moved.refunded_minor, b.amount_minor)
            .filter(|refunded| *refunded <= moved.charged_minor)
            .ok_or_else(|| too_much("the refund exceeds what was charged"))?;
        ledger.orders.insert(order, moved);
        let ev = sim.event(
            &b.key,
            "refund.succeeded",
            WebhookData {
                order_id: b.order_id.clone(),
                amount_minor: b.amount_minor,
                currency: Some(SHOP_CURRENCY.to_string()),
                payment_id: None,
                method: None,
                refund_id: Some(b.refund_id.clone()),
                reason: None,
            },
        );
        Ok(Intent {
            id: format!("re_{}", &event_id(&b.key, "refund")[4..]),
            events: vec![ev],
        })
    })?;
    sim.dispatch(url, intent.events.clone());
    pending(intent.id)
}

/// Sets where the calling merchant's events go, unless the operator fixed it at start.
async fn webhook_endpoint(
    State(sim): State<Shared>,
    headers: HeaderMap,
    Json(b): Json<WebhookEndpointBody>,
) -> Result<StatusCode, Problem> {
    let merchant = sim.merchant(&headers)?;
    let scheme_ok = b.url.starts_with("http://") || b.url.starts_with("https://");
    if !scheme_ok || b.url.len() > 2048 {
        return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "an http(s) URL"));
    }
    let fixed = sim
        .config
        .merchants
        .iter()
        .any(|m| m.id == merchant && m.webhook_url.as_ref().is_some_and(|u| *u != b.url));
    if fixed {
        return Err(problem(
            StatusCode::CONFLICT,
            "this merchant's webhook URL is fixed by the gateway's operator",
        ));
    }
    tracing::info!(merchant = %merchant, url = %b.url, "webhook endpoint registered");
    sim.ledger().webhook_urls.insert(merchant, b.url);
    Ok(StatusCode::NO_CONTENT)
}

/// The gateway simulator's state over `config`.
fn new_sim(
    config: GatewaySimConfig,
    rng: Arc<dyn RandomSource>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Shared> {
    let mut ledger = Ledger::default();
    let mut merchants = BTreeMap::new();
    for m in &config.merchants {
        anyhow::ensure!(
            m.api_key.len() >= MIN_API_KEY_BYTES,
            "the API key of merchant {} is shorter than {MIN_API_KEY_BYTES} bytes",
            m.id
        );
        merchants.insert(key_digest(&m.api_key), m.id.clone());
        if let Some(url) = &m.webhook_url {
            ledger.webhook_urls.insert(m.id.clone(), url.clone());
        }
    }
    anyhow::ensure!(
        !merchants.is_empty(),
        "the gateway needs at least one merchant"
    );
    let cards = CardVault::new(&config.card_key)?;
    Ok(Arc::new(Sim {
        cards,
        config,
        merchants,
        ledger: Mutex::new(ledger),
        rng,
        clock,
        client: crate::outbound::client(Duration::from_secs(5))?,
    }))
}

/// The gateway simulator's routes.
fn router(sim: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/tokens", post(tokens))
        .route("/v1/charges", post(charge))
        .route("/v1/refunds", post(refund))
        .route("/v1/webhook_endpoint", put(webhook_endpoint))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(sim)
}

/// Serves the gateway simulator on `listener` until the process ends.
pub async fn serve_gateway_sim(
    listener: tokio::net::TcpListener,
    config: GatewaySimConfig,
    rng: Arc<dyn RandomSource>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    axum::serve(listener, router(new_sim(config, rng, clock)?)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment_http::WEBHOOK_PATH;
    use agora_seams::system::{OsRandom, SystemClock};
    use tokio::sync::mpsc;

    const SHOP_KEY: &str = "shop-key-0123456789abcdef";
    const OTHER_KEY: &str = "other-key-0123456789abcdef";

    fn config() -> GatewaySimConfig {
        let mut merchants =
            parse_merchants(&format!("shop={SHOP_KEY}, other={OTHER_KEY}")).expect("two merchants");
        merchants[1].webhook_url = Some("http://127.0.0.1:9/fixed".into());
        GatewaySimConfig {
            secret: b"whsec-unit-tests-0123".to_vec(),
            merchants,
            min_delay_ms: 0,
            max_delay_ms: 0,
            duplicate_percent: 0,
            reorder_percent: 0,
            card_key: agora_actors::card::TEST_CARD_KEY.to_vec(),
        }
    }

    /// Serves `router` on a free loopback port; returns its base URL.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    /// A webhook receiver that forwards every event it gets.
    async fn receiver() -> (String, mpsc::UnboundedReceiver<WebhookEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            WEBHOOK_PATH,
            post(move |Json(ev): Json<WebhookEvent>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(ev);
                    StatusCode::OK
                }
            }),
        );
        (format!("{}{WEBHOOK_PATH}", serve(app).await), rx)
    }

    async fn started() -> (Shared, String) {
        let sim = new_sim(config(), Arc::new(OsRandom), Arc::new(SystemClock)).expect("sim");
        let base = serve(router(sim.clone())).await;
        (sim, base)
    }

    async fn call(
        base: &str,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: serde_json::Value,
    ) -> StatusCode {
        let mut req = reqwest::Client::new()
            .request(method, format!("{base}{path}"))
            .json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send().await.expect("gateway answers").status()
    }

    fn charge_body(key: &str, order_id: &str, amount_minor: u64) -> serde_json::Value {
        let card = agora_actors::card::test_card("4242424242424242").expect("a test card");
        serde_json::json!({"key": key, "order_id": order_id, "amount_minor": amount_minor,
            "currency": "INR", "method": {"Card": card}})
    }

    async fn charge_as(base: &str, key: Option<&str>, body: serde_json::Value) -> StatusCode {
        call(base, reqwest::Method::POST, "/v1/charges", key, body).await
    }

    #[test]
    fn merchant_lists_parse_and_refuse_short_keys_duplicates_and_nothing() {
        let m = parse_merchants(&format!("a={SHOP_KEY},b={OTHER_KEY}")).expect("valid");
        assert_eq!((m[0].id.as_str(), m[1].id.as_str()), ("a", "b"));
        assert_eq!(
            parse_merchants("a=short"),
            Err(MerchantsError::ShortKey("a".into()))
        );
        assert!(matches!(
            parse_merchants(&format!("a={SHOP_KEY},b={SHOP_KEY}")),
            Err(MerchantsError::Duplicate(_))
        ));
        assert!(matches!(
            parse_merchants("nokey"),
            Err(MerchantsError::Malformed(_))
        ));
        assert_eq!(parse_merchants(" , "), Err(MerchantsError::Empty));
    }

    #[tokio::test]
    async fn only_merchants_with_their_key_are_served_and_events_go_only_to_their_own_url() {
        let (_sim, base) = started().await;
        let (url, mut events) = receiver().await;
        let body = charge_body("o1:charge", "o1", 29_800);
        assert_eq!(
            charge_as(&base, None, body.clone()).await,
            StatusCode::UNAUTHORIZED
        );
        let wrong = Some("not-a-key-of-anyone-at-all");
        assert_eq!(
            charge_as(&base, wrong, body.clone()).await,
            StatusCode::UNAUTHORIZED
        );
        let put = reqwest::Method::PUT;
        let endpoint = serde_json::json!({ "url": url });
        let status = call(
            &base,
            put.clone(),
            "/v1/webhook_endpoint",
            None,
            endpoint.clone(),
        );
        assert_eq!(status.await, StatusCode::UNAUTHORIZED);
        // No URL registered yet: 428, nothing charged.
        let shop = Some(SHOP_KEY);
        assert_eq!(
            charge_as(&base, shop, body.clone()).await,
            StatusCode::PRECONDITION_REQUIRED
        );
        // A call naming its own webhook URL is refused.
        let mut named = charge_body("o2:charge", "o2", 100);
        named["webhook_url"] = serde_json::json!("http://127.0.0.1:1/attacker");
        assert_eq!(
            charge_as(&base, shop, named).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Another merchant cannot move a URL its operator fixed.
        let status = call(
            &base,
            put.clone(),
            "/v1/webhook_endpoint",
            Some(OTHER_KEY),
            endpoint.clone(),
        );
        assert_eq!(status.await, StatusCode::CONFLICT);
        let status = call(&base, put, "/v1/webhook_endpoint", shop, endpoint);
        assert_eq!(status.await, StatusCode::NO_CONTENT);
        assert_eq!(charge_as(&base, shop, body).await, StatusCode::OK);
        let mut kinds = Vec::new();
        while kinds.len() < 2 {
            let ev = events.recv().await.expect("the receiver stays up");
            assert_eq!(ev.data.payment_id.as_deref(), Some("o1:charge"));
            assert_eq!(ev.data.amount_minor, 29_800);
            assert_eq!(ev.data.currency.as_deref(), Some("INR"));
            assert_eq!(ev.data.method.as_deref(), Some("card"));
            kinds.push(ev.kind);
        }
        kinds.sort();
        assert_eq!(kinds, ["charge.pending", "charge.succeeded"]);
    }

    #[tokio::test]
    async fn huge_amounts_are_refused_sums_are_bounded_and_the_gateway_keeps_serving() {
        let (sim, base) = started().await;
        sim.ledger()
            .webhook_urls
            .insert("shop".into(), "http://127.0.0.1:9/none".into());
        let shop = Some(SHOP_KEY);
        for key in ["k1", "k2"] {
            let body = charge_body(key, "o1", u64::MAX);
            assert_eq!(
                charge_as(&base, shop, body).await,
                StatusCode::UNPROCESSABLE_ENTITY
            );
        }
        let body = charge_body("k3", "o1", MAX_AMOUNT_MINOR);
        assert_eq!(charge_as(&base, shop, body).await, StatusCode::OK);
        // A second charge of the same order would take the sum past the bound.
        let body = charge_body("k4", "o1", MAX_AMOUNT_MINOR);
        assert_eq!(
            charge_as(&base, shop, body).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let refund = serde_json::json!({"key": "r1", "order_id": "o1", "refund_id": "r",
            "amount_minor": u64::MAX});
        let status = call(&base, reqwest::Method::POST, "/v1/refunds", shop, refund);
        assert_eq!(status.await, StatusCode::UNPROCESSABLE_ENTITY);
        let body = charge_body("k5", "o2", 500);
        assert_eq!(charge_as(&base, shop, body).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_panic_while_the_ledger_is_held_does_not_break_later_calls() {
        let (sim, base) = started().await;
        sim.ledger()
            .webhook_urls
            .insert("shop".into(), "http://127.0.0.1:9/none".into());
        let held = sim.clone();
        let panicked = std::thread::spawn(move || {
            let _ledger = held.ledger.lock();
            panic!("a bug while the ledger is held");
        })
        .join();
        assert!(panicked.is_err());
        assert!(sim.ledger.is_poisoned());
        let body = charge_body("k1", "o1", 500);
        assert_eq!(charge_as(&base, Some(SHOP_KEY), body).await, StatusCode::OK);
        assert!(!sim.ledger.is_poisoned(), "recovered once");
    }
}
