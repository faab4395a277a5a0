//! Headers of answers that create or replay: a 201 names the new resource in `Location`
//! (where a client reads it), and an answer replayed for a retried `Idempotency-Key`
//! carries `Idempotent-Replayed: true`.

use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The header a replayed answer carries.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// `answer`, with `Location: location` if it is a 201.
pub fn with_location(answer: impl IntoResponse, location: &str) -> Response {
    let mut r = answer.into_response();
    if r.status() == StatusCode::CREATED {
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers_mut().insert(LOCATION, v);
        }
    }
    r
}

/// `answer`, marked as the replay of an earlier answer to the same idempotency key.
pub fn replayed(answer: impl IntoResponse) -> Response {
    let mut r = answer.into_response();
    r.headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_201_names_a_location_and_a_replay_says_so() {
        let made = with_location((StatusCode::CREATED, "x"), "/api/v1/orders/o1");
        assert_eq!(made.headers()[LOCATION], "/api/v1/orders/o1");
        let replaced = with_location((StatusCode::OK, "x"), "/api/v1/orders/o1");
        assert!(replaced.headers().get(LOCATION).is_none());
        let again = replayed((StatusCode::CONFLICT, "x"));
        assert_eq!(again.headers()[IDEMPOTENT_REPLAYED], "true");
    }
}
