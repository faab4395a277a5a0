//! The payment gateway as a separate HTTP service.
//!
//! - [`HttpGateway`]: the node's `PaymentGateway` over HTTP (`POST /v1/charges`,
//!   `POST /v1/refunds`); results come back later as signed webhooks to the shop's
//!   `POST /api/v1/payments/webhook`.
//! - [`serve_gateway_sim`]: `agora payment-gateway-sim`, a loopback gateway that decides like
//!   the in-process simulated gateway (same test cards) and delivers each result as a webhook
//!   signed with HMAC-SHA256, after a random delay, sometimes twice, sometimes with a late
//!   `charge.pending` after the result (configurable percentages).

use agora_actors::gateway::{decide, ExternalError, PaymentGateway};
use agora_actors::money::Money;
use agora_actors::payment::Method;
use agora_actors::seams::{Clock, RandomSource};
use agora_http_edge::webhook::{self, WebhookData, WebhookEvent};
use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Path of the shop's webhook route.
pub const WEBHOOK_PATH: &str = "/api/v1/payments/webhook";

/// `POST /v1/charges`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeBody {
    /// Idempotency key: one charge per key.
    pub key: String,
    /// The order.
    pub order_id: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// How to pay.
    pub method: Method,
    /// Where to send the events (the gateway's configured URL otherwise).
    pub webhook_url: Option<String>,
}

/// `POST /v1/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundBody {
    /// Idempotency key: one refund per key.
    pub key: String,
    /// The order whose charge is refunded.
    pub order_id: String,
    /// The shop's refund id (echoed in the events).
    pub refund_id: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Where to send the events.
    pub webhook_url: Option<String>,
}

/// The gateway's answer to a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    /// The intent's id.
    pub id: String,
    /// `pending` (the result comes as a webhook).
    pub status: String,
}

/// A `PaymentGateway` that calls a gateway service over HTTP.
pub struct HttpGateway {
    base: String,
    client: reqwest::Client,
    webhook_url: Arc<OnceLock<String>>,
}

impl HttpGateway {
    /// A client of the gateway at `base` (like `http://127.0.0.1:7070`); `webhook_url` is set
    /// once the shop API listens, and sent with each call.
    pub fn new(base: &str, webhook_url: Arc<OnceLock<String>>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client,
            webhook_url,
        })
    }

    async fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<(), ExternalError> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ExternalError::Timeout
                } else {
                    ExternalError::Unavailable(e.to_string())
                }
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ExternalError::Unavailable(format!(
                "gateway answered {}",
                resp.status()
            )))
        }
    }
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(
        &self,
        key: &str,
        order_id: &str,
        method: &Method,
        amount: &Money,
    ) -> Result<(), ExternalError> {
        let body = ChargeBody {
            key: key.to_string(),
            order_id: order_id.to_string(),
            amount_minor: amount.amount_minor,
            method: method.clone(),
            webhook_url: self.webhook_url.get().cloned(),
        };
        self.post("/v1/charges", &body).await
    }

    async fn refund(
        &self,
        key: &str,
        order_id: &str,
        refund_id: &str,
        amount: &Money,
    ) -> Result<(), ExternalError> {
        let body = RefundBody {
            key: key.to_string(),
            order_id: order_id.to_string(),
            refund_id: refund_id.to_string(),
            amount_minor: amount.amount_minor,
            webhook_url: self.webhook_url.get().cloned(),
        };
        self.post("/v1/refunds", &body).await
    }
}

/// How the gateway simulator behaves.
#[derive(Debug, Clone)]
pub struct GatewaySimConfig {
    /// The webhook signing secret (shared with the shop).
    pub secret: Vec<u8>,
    /// Where events go when a call names no URL.
    pub webhook_url: Option<String>,
    /// Shortest delay before an event is sent (ms).
    pub min_delay_ms: u64,
    /// Longest delay before an event is sent (ms).
    pub max_delay_ms: u64,
    /// Percentage of events sent twice (same event id).
    pub duplicate_percent: u32,
    /// Percentage of charges whose `charge.pending` event is sent after the result.
    pub reorder_percent: u32,
}

#[derive(Debug, Clone)]
struct Intent {
    id: String,
    events: Vec<WebhookEvent>,
    url: Option<String>,
}

#[derive(Default)]
struct Ledger {
    /// Intents by idempotency key.
    intents: BTreeMap<String, Intent>,
    /// Per order: amount charged successfully, amount refunded.
    orders: BTreeMap<String, (u64, u64)>,
}

struct Sim {
    config: GatewaySimConfig,
    ledger: Mutex<Ledger>,
    rng: Arc<dyn RandomSource>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

type Shared = Arc<Sim>;

fn event_id(key: &str, kind: &str) -> String {
    format!(
        "evt_{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{key}\n{kind}").as_bytes())
    )
}

impl Sim {
    fn percent(&self, p: u32) -> bool {
        self.rng.next_u64() % 100 < u64::from(p)
    }

    fn delay(&self) -> Duration {
        let lo = self.config.min_delay_ms;
        let hi = self.config.max_delay_ms.max(lo);
        Duration::from_millis(lo + self.rng.next_u64() % (hi - lo + 1))
    }

    fn event(&self, key: &str, kind: &str, data: WebhookData) -> WebhookEvent {
        WebhookEvent {
            id: event_id(key, kind),
            kind: kind.to_string(),
            created: self.clock.now_ms() / 1000,
            data,
        }
    }

    /// Sends `events` in order, each after its own delay (so they may overtake each other),
    /// some twice; with `reorder`, the first event is sent after the last one.
    fn dispatch(self: &Arc<Self>, url: Option<String>, mut events: Vec<WebhookEvent>) {
        let Some(url) = url.or_else(|| self.config.webhook_url.clone()) else {
            tracing::warn!("no webhook URL: events dropped");
            return;
        };
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

fn problem(status: StatusCode, detail: &str) -> (StatusCode, Json<serde_json::Value>) {
    (
        status,
        Json(serde_json::json!({"title": "refused", "status": status.as_u16(), "detail": detail})),
    )
}

type Answer = Result<Json<Accepted>, (StatusCode, Json<serde_json::Value>)>;

type Problem = (StatusCode, Json<serde_json::Value>);

impl Sim {
    /// The intent already made for idempotency key `key` (and `false`), or the one `create`
    /// makes from the ledger, recorded under `key` (and `true`).
    fn intent_once(
        &self,
        key: &str,
        create: impl FnOnce(&mut Ledger) -> Result<Intent, Problem>,
    ) -> Result<(Intent, bool), Problem> {
        let Ok(mut ledger) = self.ledger.lock() else {
            return Err(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ledger poisoned",
            ));
        };
        if let Some(i) = ledger.intents.get(key) {
            return Ok((i.clone(), false));
        }
        let intent = create(&mut ledger)?;
        ledger.intents.insert(key.to_string(), intent.clone());
        Ok((intent, true))
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200
}

async fn charge(State(sim): State<Shared>, Json(b): Json<ChargeBody>) -> Answer {
    if !valid_id(&b.key) || !valid_id(&b.order_id) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad key or order id",
        ));
    }
    let (intent, fresh) = sim.intent_once(&b.key, |ledger| {
        let data = |reason: Option<String>| WebhookData {
            order_id: b.order_id.clone(),
            amount_minor: b.amount_minor,
            refund_id: None,
            reason,
        };
        let mut events = vec![sim.event(&b.key, "charge.pending", data(None))];
        match decide(&b.method) {
            Some(Ok(())) => {
                events.push(sim.event(&b.key, "charge.succeeded", data(None)));
                ledger.orders.entry(b.order_id.clone()).or_default().0 += b.amount_minor;
            }
            Some(Err(reason)) => {
                events.push(sim.event(&b.key, "charge.failed", data(Some(reason))))
            }
            None => {} // never answers
        }
        Ok(Intent {
            id: format!("pi_{}", &event_id(&b.key, "intent")[4..]),
            events,
            url: b.webhook_url.clone(),
        })
    })?;
    if fresh {
        sim.dispatch(intent.url.clone(), intent.events.clone());
    } else if let Some(last) = intent.events.last() {
        // A repeated call (the shop lost the answer): the result again, same event id.
        sim.dispatch(b.webhook_url.or(intent.url.clone()), vec![last.clone()]);
    }
    Ok(Json(Accepted {
        id: intent.id,
        status: "pending".into(),
    }))
}

async fn refund(State(sim): State<Shared>, Json(b): Json<RefundBody>) -> Answer {
    if !valid_id(&b.key) || !valid_id(&b.order_id) || !valid_id(&b.refund_id) {
        return Err(problem(StatusCode::UNPROCESSABLE_ENTITY, "bad key or id"));
    }
    let (intent, fresh) = sim.intent_once(&b.key, |ledger| {
        let (charged, refunded) = ledger.orders.get(&b.order_id).copied().unwrap_or((0, 0));
        if refunded + b.amount_minor > charged {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the refund exceeds what was charged",
            ));
        }
        ledger.orders.entry(b.order_id.clone()).or_default().1 += b.amount_minor;
        let ev = sim.event(
            &b.key,
            "refund.succeeded",
            WebhookData {
                order_id: b.order_id.clone(),
                amount_minor: b.amount_minor,
                refund_id: Some(b.refund_id.clone()),
                reason: None,
            },
        );
        Ok(Intent {
            id: format!("re_{}", &event_id(&b.key, "refund")[4..]),
            events: vec![ev],
            url: b.webhook_url.clone(),
        })
    })?;
    let url = if fresh {
        intent.url.clone()
    } else {
        b.webhook_url.or(intent.url.clone())
    };
    sim.dispatch(url, intent.events.clone());
    Ok(Json(Accepted {
        id: intent.id,
        status: "pending".into(),
    }))
}

/// Serves the gateway simulator on `listener` until the process ends.
pub async fn serve_gateway_sim(
    listener: tokio::net::TcpListener,
    config: GatewaySimConfig,
    rng: Arc<dyn RandomSource>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let sim = Arc::new(Sim {
        config,
        ledger: Mutex::new(Ledger::default()),
        rng,
        clock,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/charges", post(charge))
        .route("/v1/refunds", post(refund))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(sim);
    axum::serve(listener, app).await?;
    Ok(())
}
