//! A small HTTP client for the tests (reqwest, or raw bytes for malformed requests) and
//! the responses it decodes.

use crate::*;
use std::time::Duration;

/// A decoded HTTP response: status, content type and body (parsed as JSON when possible).
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status code.
    pub status: u16,
    /// Value of the `content-type` header ("" when absent).
    pub content_type: String,
    /// Body parsed as JSON, `Value::Null` when it is not JSON.
    pub body: Value,
    /// Raw body text (lossy UTF-8).
    pub text: String,
    /// Value of the `retry-after` header, when present.
    pub retry_after: Option<String>,
    /// Every header of the answer.
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// The value of header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics (showing the body) unless the status is `code`; returns `self` for chaining.
    #[track_caller]
    pub fn expect_status(self, code: u16, ctx: &str) -> Self {
        assert_eq!(
            self.status, code,
            "{ctx}: expected HTTP {code}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    /// True when the content type is `application/problem+json`.
    pub fn is_problem_json(&self) -> bool {
        self.content_type
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/problem+json"))
    }

    /// Panics unless this is a well-formed problem document matching the HTTP status.
    #[track_caller]
    pub fn assert_problem(&self, ctx: &str) {
        assert!(
            self.is_problem_json(),
            "{ctx}: error response (HTTP {}) must have content-type application/problem+json, got {:?}; body {}",
            self.status,
            self.content_type,
            self.text
        );
        for field in ["type", "title", "detail"] {
            assert!(
                self.body.get(field).is_some_and(Value::is_string),
                "{ctx}: problem document lacks string field {field:?}: {}",
                self.text
            );
        }
        assert_eq!(
            self.body.get("status").and_then(Value::as_u64),
            Some(u64::from(self.status)),
            "{ctx}: problem document 'status' must equal the HTTP status {}: {}",
            self.status,
            self.text
        );
    }

    /// String field of the JSON body, panicking if absent.
    #[track_caller]
    pub fn str_field(&self, field: &str) -> String {
        self.body
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("response lacks string field {field:?}: {}", self.text))
            .to_string()
    }
}

/// HTTP client bound to one base URL, with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// Bearer token sent with every request, if any.
    pub token: Option<String>,
}

impl Client {
    /// A client for `base` without a token (30 s request timeout, no proxy, no retries).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .retry(reqwest::retry::never())
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("build reqwest client");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// Same client with the given bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// Same token, pointed at another base URL (e.g. after a restart on new ports).
    pub fn rebased(&self, base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// Same base URL, without any token.
    pub fn anonymous(&self) -> Self {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// A request builder for `path` (relative to the base URL) with the token attached.
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request; transport errors are returned.
    pub async fn try_send(&self, rb: reqwest::RequestBuilder) -> Result<Resp, reqwest::Error> {
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            content_type,
            body,
            text,
            retry_after,
            headers,
        })
    }

    /// Sends a request; panics on transport errors.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        self.try_send(rb)
            .await
            .unwrap_or_else(|e| panic!("HTTP request to {} failed: {e:?}", self.base))
    }

    /// Sends a request over a raw socket, writing the body while already reading the answer.
    ///
    /// For oversized bodies: a server may answer 413 and close before reading the whole body,
    /// which makes hyper's client report a write error instead of the response.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> std::io::Result<Resp> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, a)| a)
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        let (mut rd, mut wr) = stream.into_split();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let writer = tokio::spawn(async move {
            // Errors are expected when the server stops reading early.
            if wr.write_all(head.as_bytes()).await.is_ok() && wr.write_all(&body).await.is_ok() {
                let _ = wr.flush().await;
            }
            wr
        });
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let read_result = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if parse_http_response(&buf, false).is_some() {
                            return Ok(());
                        }
                    }
                    // A reset after (part of) the answer arrived: use what we have.
                    Err(_) if !buf.is_empty() => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        writer.abort();
        match read_result {
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no complete HTTP response within 30 s",
                ))
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        parse_http_response(&buf, true).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "incomplete HTTP response: {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(500)])
                ),
            )
        })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    /// POST `path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.req(Method::POST, path).json(body)).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// POST /api/v1/users.
    pub async fn register(&self, email: &str, password: &str, name: &str) -> Resp {
        self.post(
            "/api/v1/users",
            &json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    /// POST /api/v1/auth/login.
    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Logs in (asserting 200) and returns a client carrying the access token.
    pub async fn login_as(&self, email: &str, password: &str) -> Client {
        let r = self
            .login(email, password)
            .await
            .expect_status(200, &format!("login as {email}"));
        assert_eq!(
            r.body.get("token_type").and_then(Value::as_str),
            Some("Bearer"),
            "login response token_type: {}",
            r.text
        );
        self.anonymous().with_token(&r.str_field("access_token"))
    }

    /// Registers a fresh user (unique email) and logs in; returns (client, email).
    pub async fn new_user(&self) -> (Client, String) {
        let email = unique_email();
        let r = self.register(&email, USER_PASSWORD, "Test User").await;
        let r = r.expect_status(201, &format!("register {email}"));
        r.str_field("user_id");
        assert_eq!(
            r.header("location"),
            Some("/api/v1/me"),
            "a new account's Location"
        );
        (self.login_as(&email, USER_PASSWORD).await, email)
    }

    /// Admin: creates a product (asserting 201) in category `test`.
    pub async fn create_product(&self, sku: &str, price_minor: u64) -> Value {
        let r = self
            .post(
                "/api/v1/products",
                &json!({
                    "sku": sku,
                    "name": format!("Test product {sku}"),
                    "description": "created by agora-tests",
                    "category": "test",
                    "price": {"amount_minor": price_minor, "currency": "INR"},
                }),
            )
            .await
            .expect_status(201, &format!("create product {sku}"));
        assert_eq!(
            r.header("location"),
            Some(format!("/api/v1/products/{sku}").as_str()),
            "a created product is named in Location"
        );
        r.body
    }

    /// Admin: receives `qty` units of stock (asserting 200).
    pub async fn receive(&self, sku: &str, qty: u64) -> Inventory {
        let r = self
            .post(
                &format!("/api/v1/inventory/{sku}/receive"),
                &json!({ "quantity": qty }),
            )
            .await
            .expect_status(200, &format!("receive {qty} x {sku}"));
        Inventory::from_json(&r.body)
    }

    /// Admin: creates a product with a unique SKU and `stock` units; returns the SKU.
    pub async fn stocked_product(&self, price_minor: u64, stock: u64) -> String {
        let sku = unique_sku();
        self.create_product(&sku, price_minor).await;
        if stock > 0 {
            let inv = self.receive(&sku, stock).await;
            assert_eq!(
                inv.available, stock,
                "fresh product {sku}: available after receiving {stock}: {inv:?}"
            );
        }
        sku
    }

    /// Admin: GET /api/v1/inventory/{sku} (asserting 200 and the on_hand invariant). A 503
    /// (its shard changing hands: retryable by contract) is asked again, within a bound.
    pub async fn inventory(&self, sku: &str) -> Inventory {
        let path = format!("/api/v1/inventory/{sku}");
        let r = poll_until(&format!("inventory of {sku}"), POLL_TIMEOUT, || async {
            let r = self.get(&path).await;
            if r.status == 503 {
                Err(r.text)
            } else {
                Ok(r)
            }
        })
        .await
        .expect_status(200, &format!("inventory of {sku}"));
        let inv = Inventory::from_json(&r.body);
        assert_eq!(
            inv.on_hand,
            inv.available + inv.reserved,
            "inventory invariant on_hand == available + reserved broken for {sku}: {}",
            r.text
        );
        inv
    }

    /// POST /api/v1/cart/items (asserting 200); returns the cart.
    pub async fn add_to_cart(&self, sku: &str, qty: u64) -> Value {
        self.post("/api/v1/cart/items", &json!({"sku": sku, "quantity": qty}))
            .await
            .expect_status(200, &format!("add {qty} x {sku} to cart"))
            .body
    }

    /// GET /api/v1/cart (asserting 200).
    pub async fn cart(&self) -> Value {
        self.get("/api/v1/cart")
            .await
            .expect_status(200, "get cart")
            .body
    }

    /// POST /api/v1/orders with an idempotency key (None: header omitted).
    pub async fn checkout(&self, key: Option<&str>, body: &Value) -> Resp {
        self.send(self.checkout_request(key, body)).await
    }

    /// The request builder for a checkout (for concurrent or fallible sends).
    pub fn checkout_request(&self, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let rb = self.req(Method::POST, "/api/v1/orders").json(body);
        match key {
            Some(k) => rb.header("Idempotency-Key", k),
            None => rb,
        }
    }

    /// Checks out with a fresh idempotency key, asserting 201; returns the order id.
    pub async fn place_order(&self, payment: Value) -> String {
        let key = unique_key();
        let r = self
            .checkout(Some(&key), &checkout_body(payment))
            .await
            .expect_status(201, "checkout");
        let status = r.str_field("status");
        assert!(
            ALL_ORDER_STATUSES.contains(&status.as_str()),
            "checkout returned unknown status {status:?}: {}",
            r.text
        );
        r.str_field("order_id")
    }

    /// GET /api/v1/orders/{id} (asserting 200).
    pub async fn order(&self, order_id: &str) -> Value {
        self.get(&format!("/api/v1/orders/{order_id}"))
            .await
            .expect_status(200, &format!("get order {order_id}"))
            .body
    }

    /// Every item of the list at `path` (a path without a query), newest first, walked
    /// `limit` at a time by following `next_cursor` (asserting 200 and a page of at most
    /// `limit` items each time).
    pub async fn walk(&self, path: &str, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut url = format!("{path}?limit={limit}");
        loop {
            let r = self
                .get(&url)
                .await
                .expect_status(200, &format!("GET {url}"));
            let page = r
                .body
                .get("items")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("GET {url} lacks an items array: {}", r.text));
            assert!(
                page.len() <= limit,
                "GET {url}: {} items, more than limit={limit}",
                page.len()
            );
            items.extend(page.iter().cloned());
            match r.body.get("next_cursor") {
                Some(Value::String(c)) => url = format!("{path}?limit={limit}&cursor={c}"),
                Some(Value::Null) => return items,
                other => panic!("GET {url}: next_cursor must be a string or null, got {other:?}"),
            }
        }
    }

    /// GET /api/v1/orders (asserting 200), every page; returns the items, newest first.
    pub async fn orders(&self) -> Vec<Value> {
        self.walk("/api/v1/orders", 100).await
    }

    /// GET /api/v1/notifications (asserting 200), every page; returns the items, newest first.
    pub async fn notifications(&self) -> Vec<Value> {
        self.walk("/api/v1/notifications", 100).await
    }
}

/// Parses a raw HTTP/1.1 response; `None` while incomplete (`at_eof`: the connection ended).
pub fn parse_http_response(buf: &[u8], at_eof: bool) -> Option<Resp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-type" => content_type = v.to_string(),
            "content-length" => content_length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let bytes: Vec<u8> = if chunked {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = rest[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size_str = String::from_utf8_lossy(&rest[pos..line_end]).into_owned();
            let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                break;
            }
            if rest.len() < pos + size {
                return None;
            }
            out.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
        out
    } else if let Some(len) = content_length {
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if at_eof {
        rest.to_vec()
    } else {
        return None;
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some(Resp {
        status,
        content_type,
        body,
        text,
        retry_after: None,
        headers: reqwest::header::HeaderMap::new(),
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn http_response_parsing() {
        let raw = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/problem+json\r\ncontent-length: 2\r\n\r\n{}";
        let r = parse_http_response(raw, false).expect("complete");
        assert_eq!(
            (r.status, r.content_type.as_str(), r.text.as_str()),
            (413, "application/problem+json", "{}")
        );
        assert!(parse_http_response(&raw[..raw.len() - 1], false).is_none());
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked, false).expect("chunked").text,
            "{}"
        );
    }
}
