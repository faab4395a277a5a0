//! Errors as `application/problem+json` (RFC 9457), with the right status for each cause.

use agora_actors::client::AskError;
use agora_actors::DomainError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Short slug, the last segment of the `type` URI.
    pub slug: &'static str,
    /// Human-readable title.
    pub title: &'static str,
    /// What happened in this case.
    pub detail: String,
    /// Extra members.
    pub extra: Map<String, Value>,
    /// Seconds after which a retry may succeed.
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem with no extra members.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// Adds an extra member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 422: a field's value is not acceptable.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation-error",
            "Invalid input",
            format!("{field}: {reason}"),
        )
        .with("field", field)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404: no such resource (or not the caller's).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 503: try again shortly.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        p.retry_after = Some(1);
        p
    }

    /// 500: a bug; logged.
    pub fn internal(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::error!(detail, "internal error answered to a client");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "an internal error occurred",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("/problems/{}", self.slug),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(m) = &mut body {
            m.extend(self.extra);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<DomainError> for Problem {
    fn from(e: DomainError) -> Self {
        let detail = e.to_string();
        match e {
            DomainError::NotFound(_) => Problem::not_found(detail),
            DomainError::AlreadyExists(_) => Problem::new(
                StatusCode::CONFLICT,
                "already-exists",
                "Already exists",
                detail,
            ),
            DomainError::Invalid { field, reason } => Problem::invalid(&field, reason),
            DomainError::OutOfStock {
                sku,
                requested,
                available,
            } => Problem::new(StatusCode::CONFLICT, "out-of-stock", "Out of stock", detail)
                .with("sku", sku)
                .with("requested", requested)
                .with("available", available),
            DomainError::Conflict(_) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            DomainError::PreconditionFailed(_) => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
                detail,
            ),
            DomainError::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
            ),
            DomainError::BadCredentials => Problem::unauthorized("invalid email or password"),
            DomainError::WrongKind { .. } | DomainError::StateCodec(_) => Problem::internal(detail),
            DomainError::Locked { retry_after_ms } => {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "account-locked",
                    "Account locked",
                    "too many failed logins; try again after Retry-After seconds",
                );
                p.retry_after =
                    Some(u32::try_from(retry_after_ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX));
                p
            }
            DomainError::Forbidden(why) => Problem::forbidden(why),
        }
    }
}

impl From<AskError> for Problem {
    fn from(e: AskError) -> Self {
        match e {
            AskError::Domain(d) => d.into(),
            AskError::Overloaded => Problem::unavailable("the node is overloaded"),
            AskError::Unavailable(why) | AskError::NotServedHere { why, .. } => {
                Problem::unavailable(why)
            }
            AskError::Timeout => Problem::unavailable("the request timed out; it may still take effect, retry with the same Idempotency-Key"),
        }
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let detail = r.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Problem::new(status, "payload-too-large", "Payload too large", detail)
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
                status,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            StatusCode::UNPROCESSABLE_ENTITY => {
                Problem::new(status, "validation-error", "Invalid input", detail)
            }
            _ => Problem::bad_request(detail),
        }
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Self {
        Problem::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Problem::bad_request(r.body_text())
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, Problem>;
