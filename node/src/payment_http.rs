//! The node's client of a payment gateway that is a separate HTTP service.
//!
//! - [`HttpGateway`]: the node's `PaymentGateway` over HTTP (`POST /v1/tokens` exchanges a
//!   card number for a token, `POST /v1/charges` charges by token, `POST /v1/refunds`),
//!   authenticated with the merchant's API key
//!   (`Authorization: Bearer <key>`); results come back later as signed webhooks to the URL
//!   the merchant registered (`PUT /v1/webhook_endpoint`, the shop's
//!   `POST /api/v1/payments/webhook`), never to one named in a call.
//! - Its wire types, shared with `payment_gateway_sim` (`agora payment-gateway-sim`, the
//!   loopback gateway that answers them in tests and demos).

use agora_actors::card::CardRef;
use agora_actors::gateway::{CardTokeniser, ExternalError, PaymentGateway, TokeniseError};
use agora_actors::money::Money;
use agora_actors::payment::Method;
use async_trait::async_trait;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Path of the shop's webhook route.
pub const WEBHOOK_PATH: &str = "/api/v1/payments/webhook";
/// Shortest accepted merchant API key, in bytes.
pub const MIN_API_KEY_BYTES: usize = 16;

/// `POST /v1/charges`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeBody {
    /// Idempotency key: one charge per key (and merchant); the events name it as the payment
    /// id.
    pub key: String,
    /// The order.
    pub order_id: String,
    /// Amount in minor units (at most `MAX_AMOUNT_MINOR`).
    pub amount_minor: u64,
    /// ISO 4217 currency of the amount.
    pub currency: String,
    /// How to pay.
    pub method: Method,
}

/// `POST /v1/tokens`: a card number to exchange for a token (answered with a `CardRef`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The card number (12 to 19 digits).
    pub number: String,
}

/// `POST /v1/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Idempotency key: one refund per key (and merchant).
    pub key: String,
    /// The order whose charge is refunded.
    pub order_id: String,
    /// The shop's refund id (echoed in the events).
    pub refund_id: String,
    /// Amount in minor units (at most `MAX_AMOUNT_MINOR`).
    pub amount_minor: u64,
}

/// `PUT /v1/webhook_endpoint`: where the calling merchant's events go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointBody {
    /// An `http` or `https` URL.
    pub url: String,
}

/// The gateway's answer to a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    /// The intent's id.
    pub id: String,
    /// `pending` (the result comes as a webhook).
    pub status: String,
}

/// A `PaymentGateway` that calls a gateway service over HTTP as one merchant.
pub struct HttpGateway {
    base: String,
    client: reqwest::Client,
    api_key: String,
    webhook_url: Arc<OnceLock<String>>,
}

impl HttpGateway {
    /// A client of the gateway at `base` (like `http://127.0.0.1:7070`) authenticated by
    /// `api_key`; `webhook_url` is set once the shop API listens, and registered with the
    /// gateway when it answers that none is.
    pub fn new(
        base: &str,
        api_key: &str,
        webhook_url: Arc<OnceLock<String>>,
    ) -> anyhow::Result<Self> {
        let client = crate::outbound::client(Duration::from_secs(5))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client,
            api_key: api_key.to_string(),
            webhook_url,
        })
    }

    async fn send<T: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &T,
    ) -> Result<StatusCode, ExternalError> {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                crate::outbound::failed(&self.base, &e);
                unavailable(e)
            })?;
        Ok(resp.status())
    }

    /// Posts `body` to `path`; when the gateway knows no webhook URL for this merchant
    /// (`428`, e.g. after a restart), registers the shop's and posts once more.
    async fn post<T: Serialize>(&self, path: &str, body: &T) -> Result<(), ExternalError> {
        let mut status = self.send(reqwest::Method::POST, path, body).await?;
        if status == StatusCode::PRECONDITION_REQUIRED {
            let Some(url) = self.webhook_url.get() else {
                return Err(ExternalError::Unavailable(
                    "the shop API is not listening yet".into(),
                ));
            };
            let endpoint = WebhookEndpointBody { url: url.clone() };
            let registered = self
                .send(reqwest::Method::PUT, "/v1/webhook_endpoint", &endpoint)
                .await?;
            if !registered.is_success() {
                return Err(ExternalError::Unavailable(format!(
                    "gateway refused the webhook endpoint: {registered}"
                )));
            }
            status = self.send(reqwest::Method::POST, path, body).await?;
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(ExternalError::Unavailable(format!(
                "gateway answered {status}"
            )))
        }
    }
}

fn unavailable(e: reqwest::Error) -> ExternalError {
    if e.is_timeout() {
        ExternalError::Timeout
    } else {
        ExternalError::Unavailable(e.to_string())
    }
}

#[async_trait]
impl CardTokeniser for HttpGateway {
    async fn tokenise_card(&self, number: &str) -> Result<CardRef, TokeniseError> {
        let body = TokenBody {
            number: number.to_string(),
        };
        let resp = self
            .client
            .post(format!("{}/v1/tokens", self.base))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            return Err(TokeniseError::Refused(
                "the gateway refused the card".into(),
            ));
        }
        if !status.is_success() {
            let why = format!("gateway answered {status}");
            return Err(ExternalError::Unavailable(why).into());
        }
        Ok(resp.json::<CardRef>().await.map_err(unavailable)?)
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
            currency: amount.currency.clone(),
            method: method.clone(),
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
        };
        self.post("/v1/refunds", &body).await
    }
}
