//! The API documentation: `/docs` is an HTML page whose scripts, styles and icons all come
//! from this server (and are served), which reads `/openapi.json`; nothing is loaded from
//! another origin.

use agora_tests::*;

/// The values of every `src="…"` and `href="…"` attribute in `html`.
fn linked_assets(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "src='", "href='"] {
        let quote = &attr[attr.len() - 1..];
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find(quote).expect("closing quote");
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

fn is_same_origin(link: &str) -> bool {
    !link.contains("://") && !link.starts_with("//") && !link.starts_with("data:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_page_uses_only_same_origin_assets_that_are_served() {
    let server = AgoraProcess::start(ServerOptions::default());
    let shop = server.client();

    // `/docs` leads to `/docs/` (relative links need the slash).
    let page = shop.get("/docs").await.expect_status(200, "GET /docs");
    assert!(
        page.content_type.starts_with("text/html"),
        "content type {:?}",
        page.content_type
    );
    let html = page.text;
    assert!(html.contains("<html"), "{html}");
    // Browsers are told to load nothing from elsewhere.
    let resp = shop
        .req(Method::GET, "/docs/")
        .send()
        .await
        .expect("GET /docs/");
    assert_eq!(resp.status(), 200);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "content-security-policy: {csp:?}"
    );

    let assets = linked_assets(&html);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "the page links no script or no stylesheet: {assets:?}"
    );
    for a in &assets {
        assert!(is_same_origin(a), "{a} is not on this origin");
        let path = match a.strip_prefix("./") {
            Some(rel) => format!("/docs/{rel}"),
            None if a.starts_with('/') => a.clone(),
            None => format!("/docs/{a}"),
        };
        let r = shop
            .get(&path)
            .await
            .expect_status(200, &format!("asset {path}"));
        assert!(!r.text.is_empty(), "{path} is empty");
        let wanted = if path.ends_with(".js") {
            "javascript"
        } else if path.ends_with(".css") {
            "text/css"
        } else if path.ends_with(".png") {
            "image/png"
        } else {
            ""
        };
        assert!(
            r.content_type.contains(wanted),
            "{path}: content type {:?}",
            r.content_type
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page names another origin: {html}"
    );

    // The page's configuration points at this server's document, and names no other origin.
    let init = shop
        .get("/docs/swagger-initializer.js")
        .await
        .expect_status(200, "initializer");
    assert!(init.text.contains("/openapi.json"), "{}", init.text);
    assert!(
        !init.text.contains("http://") && !init.text.contains("https://"),
        "the initializer names another origin: {}",
        init.text
    );
    let doc = shop
        .get("/openapi.json")
        .await
        .expect_status(200, "document");
    assert!(
        doc.body["paths"]["/api/v1/products/{sku}/reviews"]["post"].is_object(),
        "{}",
        doc.text
    );

    // An unknown file is a 404 problem.
    let r = shop.get("/docs/no-such-file.js").await;
    assert_eq!(r.status, 404, "{}", r.text);
    r.assert_problem("unknown docs file");
}
