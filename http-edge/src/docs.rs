//! The browsable API documentation at `/docs`: Swagger UI reading `/openapi.json`.
//!
//! The Swagger UI files are embedded in the binary by `utoipa-swagger-ui` from its vendored
//! copy (no download at build time) and served from this origin only; a Content-Security-Policy
//! keeps browsers from loading anything from elsewhere at run time.

use crate::extract::ApiPath;
use crate::problem::Problem;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use utoipa_swagger_ui::Config;

/// Where the page lives (with the trailing slash its relative asset links need).
pub const DOCS_PATH: &str = "/docs/";

/// What the page may load: only this origin (inline styles and data: images are Swagger UI's
/// own).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::from("/openapi.json")
            // No badge from the public validator (another origin).
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .filter(true),
    )
});

fn asset(path: &str) -> Response {
    match utoipa_swagger_ui::serve(path, CONFIG.clone()) {
        Ok(Some(file)) => {
            let body = match file.bytes {
                Cow::Borrowed(b) => Body::from(b),
                Cow::Owned(v) => Body::from(v),
            };
            let content_type = HeaderValue::from_str(&file.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, content_type);
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            if file.gzpipped {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            resp
        }
        Ok(None) => Problem::not_found("no such documentation file").into_response(),
        Err(e) => Problem::internal(format!("swagger ui: {e}")).into_response(),
    }
}

/// `GET /docs`: to `/docs/`.
pub async fn redirect() -> Redirect {
    Redirect::permanent(DOCS_PATH)
}

/// `GET /docs/`: the page.
pub async fn index() -> Response {
    asset("index.html")
}

/// `GET /docs/{file}`: the page's scripts, styles and icons.
pub async fn file(ApiPath(file): ApiPath<String>) -> Response {
    asset(&file)
}
