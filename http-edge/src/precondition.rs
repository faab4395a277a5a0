//! Versions for concurrent edits: an `ETag` on what a read or an edit answers, and the
//! `If-Match` an edit may carry (checked by the entity, atomically with the change).

use crate::problem::{ApiResult, Problem};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// `body` with the `ETag` of the version it shows.
pub fn with_etag(body: impl IntoResponse, etag: &str) -> Response {
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// The entity tags of an `If-Match` header: `None` when absent or `*` (any version will do).
/// Weak tags never match (an update needs the strong comparison).
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<Vec<String>>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Problem::bad_request("If-Match is not a list of entity tags"))?;
    if value.trim() == "*" {
        return Ok(None);
    }
    let tags: Vec<String> = value
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .take(16)
        .collect();
    if tags.is_empty() || tags.iter().any(|t| t.len() > 128) {
        return Err(Problem::bad_request(
            "If-Match is not a list of entity tags",
        ));
    }
    Ok(Some(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_match_lists_tags_and_any_version_is_none() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&headers(" * ")).unwrap(), None);
        assert_eq!(
            if_match(&headers("\"a\", \"b\"")).unwrap(),
            Some(vec!["\"a\"".to_string(), "\"b\"".to_string()])
        );
        assert!(if_match(&headers(",")).is_err());
        assert!(if_match(&headers(&format!("\"{}\"", "x".repeat(200)))).is_err());
    }
}
