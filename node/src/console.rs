//! The operator console: one page, its script and its stylesheet, built into the binary and
//! served on the admin port at `/console`. The files themselves are open (they hold no
//! data); everything the page shows comes from the token-protected `/admin/...` routes,
//! plus `GET /admin/console/settings`, here, which tells the page whether to offer drain,
//! move and remove. Every response carries a strict Content-Security-Policy: the page runs
//! only scripts and styles served from this port, and talks only to this port.

use crate::admin::AdminState;
use crate::admin_dto::ConsoleSettingsDto;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// The page.
const INDEX_HTML: &str = include_str!("console/index.html");
/// The page's script (plain JavaScript: no build step).
const APP_JS: &str = include_str!("console/app.js");
/// The page's stylesheet.
const APP_CSS: &str = include_str!("console/app.css");

/// What the console's responses allow: only this origin's scripts, styles and data, no
/// inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The open routes serving the console's files.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route(
            "/console/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/app.css",
            get(|| async { file("text/css; charset=utf-8", APP_CSS) }),
        )
}

/// The page.
async fn page() -> Response {
    file("text/html; charset=utf-8", INDEX_HTML)
}

/// One of the console's files with its content type and the strict headers.
fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// `GET /admin/console/settings` (behind the admin token): what the console offers on this
/// node: this node's id, whether mutating routes are enabled, and whether shards are
/// replicated.
#[utoipa::path(get, path = "/admin/console/settings", operation_id = "get_console_settings", tag = "console", security(("bearer" = [])),
    responses((status = 200, body = ConsoleSettingsDto, description = "this node's id, and whether drain, move and remove are offered")))]
pub async fn settings(State(s): State<Arc<AdminState>>) -> Json<ConsoleSettingsDto> {
    Json(ConsoleSettingsDto {
        me: s.membership.me,
        mutations: s.mutations,
        replicated: s.replicas.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// The open console routes, without the admin state (no `/admin` route is called).
    fn files() -> Router {
        router::<()>()
    }

    async fn get_path(path: &str) -> Response {
        let req = Request::get(path).body(Body::empty());
        match req {
            Ok(req) => match files().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            Err(e) => panic!("request for {path}: {e}"),
        }
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn body_of(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
        String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
    }

    #[tokio::test]
    async fn the_console_page_is_html_under_a_strict_policy() {
        let resp = get_path("/console").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(header_of(&resp, header::CONTENT_TYPE).starts_with("text/html"));
        let csp = header_of(&resp, header::CONTENT_SECURITY_POLICY).to_string();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("http"),
            "{csp}"
        );
        assert_eq!(header_of(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-store");
        let html = body_of(resp).await;
        assert!(html.contains("<script src=\"/console/app.js\""), "{html}");
        // No inline script or style, nothing fetched from elsewhere.
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "{html}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
    }

    #[tokio::test]
    async fn the_script_and_the_stylesheet_have_their_content_types() {
        let js = get_path("/console/app.js").await;
        assert_eq!(js.status(), StatusCode::OK);
        assert!(header_of(&js, header::CONTENT_TYPE).starts_with("text/javascript"));
        assert_eq!(header_of(&js, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let script = body_of(js).await;
        assert!(
            !script.contains("innerHTML"),
            "data must reach the DOM as text only"
        );
        let css = get_path("/console/app.css").await;
        assert!(header_of(&css, header::CONTENT_TYPE).starts_with("text/css"));
    }
}
