//! Cross-origin calls from browser storefronts: only the origins a node allows get CORS
//! answers (none by default), preflights included.

use agora_tests::{AgoraProcess, Client, Resp, ServerOptions};
use reqwest::Method;

/// A preflight for a POST with a JSON body and a token, from `origin`.
async fn preflight(shop: &Client, origin: &str) -> Resp {
    shop.send(
        shop.req(Method::OPTIONS, "/api/v1/cart/items")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_get_cross_origin_answers() {
    let server =
        AgoraProcess::start(ServerOptions::fast().args(["--cors-origin", "https://shop.example"]));
    let shop = server.client();
    let allowed = preflight(&shop, "https://shop.example").await;
    assert!(
        (200..300).contains(&allowed.status),
        "preflight from an allowed origin: {} {}",
        allowed.status,
        allowed.text
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    // A simple read from the allowed origin carries the header, and exposes Location.
    let read = shop
        .send(
            shop.req(Method::GET, "/api/v1/products")
                .header("origin", "https://shop.example"),
        )
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let exposed = read
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("location"), "{exposed}");
    // Another origin gets no CORS answer: the browser keeps the response from its page.
    let other = preflight(&shop, "https://evil.example").await;
    assert_eq!(
        other.header("access-control-allow-origin"),
        None,
        "{}",
        other.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_origin_is_allowed_by_default() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let answer = preflight(&server.client(), "https://shop.example").await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
}
