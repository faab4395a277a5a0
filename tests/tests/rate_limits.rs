//! Rate limits at the edge: per client address, per user, stricter on login, with
//! `X-Forwarded-For` believed only from a trusted proxy; 429 problem with `Retry-After`.

use agora_tests::{unique_email, AgoraProcess, Client, Resp, ServerOptions};
use serde_json::{json, Value};

async fn get_from(c: &Client, path: &str, xff: &str) -> Resp {
    c.send(
        c.req(reqwest::Method::GET, path)
            .header("x-forwarded-for", xff),
    )
    .await
}

/// Sends GETs from `xff` until one is refused; answers that 429 and how many passed.
async fn exhaust(c: &Client, path: &str, xff: &str) -> (Resp, usize) {
    for passed in 0..200 {
        let r = get_from(c, path, xff).await;
        if r.status == 429 {
            return (r, passed);
        }
        assert!(r.status < 400, "{path} from {xff}: {r:?}");
    }
    panic!("200 requests from {xff} were never limited");
}

/// Registers and logs in a user through the proxy as `xff`.
async fn user_from(c: &Client, xff: &str) -> Client {
    let email = unique_email();
    c.send(
        c.req(reqwest::Method::POST, "/api/v1/users")
            .header("x-forwarded-for", xff)
            .json(&json!({"email": email, "password": "per-user-pass", "name": "U"})),
    )
    .await
    .expect_status(201, "register");
    let token = c
        .send(
            c.req(reqwest::Method::POST, "/api/v1/auth/login")
                .header("x-forwarded-for", xff)
                .json(&json!({"email": email, "password": "per-user-pass"})),
        )
        .await
        .expect_status(200, "login")
        .str_field("access_token");
    c.with_token(&token)
}

/// Posts `body` to `path` through the proxy as `xff`.
async fn post_from(c: &Client, path: &str, xff: &str, body: Value) -> Resp {
    c.send(
        c.req(reqwest::Method::POST, path)
            .header("x-forwarded-for", xff)
            .json(&body),
    )
    .await
}

fn assert_limited(r: &Resp) {
    r.assert_problem("limited");
    assert_eq!(r.body["type"], "/problems/rate-limited");
    let secs: u64 = r
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(secs >= 1, "Retry-After {secs}");
}

#[tokio::test]
async fn limits_per_address_per_user_and_on_login_behind_a_trusted_proxy() {
    let server = AgoraProcess::start(ServerOptions::default().with_rate_limits().args([
        "--rate-limit-per-ip",
        "5",
        "--rate-limit-per-user",
        "2",
        "--rate-limit-login-per-min",
        "3",
        "--trusted-proxy",
        "127.0.0.1",
    ]));
    let c = server.client();

    // Per address: the burst (10) passes, then 429; another forwarded address is not affected.
    let (r, passed) = exhaust(&c, "/api/v1/products", "198.51.100.1").await;
    assert_limited(&r);
    assert!(
        (5..=14).contains(&passed),
        "{passed} passed before the limit"
    );
    get_from(&c, "/api/v1/products", "198.51.100.2")
        .await
        .expect_status(200, "another client behind the proxy");
    // The proxy's own hop list: the right-most untrusted address counts, not a spoofed
    // left-most one.
    get_from(&c, "/api/v1/products", "198.51.100.1, 198.51.100.3")
        .await
        .expect_status(200, "spoofed left-most entry is ignored");

    // Login: 3 attempts per minute per address, stricter than the rest.
    let login = |xff: &'static str| {
        let body = json!({"email": unique_email(), "password": "whatever-123"});
        post_from(&c, "/api/v1/auth/login", xff, body)
    };
    for _ in 0..3 {
        login("198.51.100.4")
            .await
            .expect_status(401, "login under the limit");
    }
    let r = login("198.51.100.4").await;
    let r = r.expect_status(429, "fourth login in a minute");
    assert_limited(&r);
    assert!(
        r.retry_after
            .as_deref()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0)
            >= 10
    );
    get_from(&c, "/api/v1/products", "198.51.100.4")
        .await
        .expect_status(200, "other routes from that address still pass");

    // Registration: the same quota as login, in its own bucket (each costs a password hash).
    let register = |xff: &'static str| {
        let body = json!({"email": unique_email(), "password": "whatever-123", "name": "R"});
        post_from(&c, "/api/v1/users", xff, body)
    };
    for _ in 0..3 {
        register("198.51.100.8")
            .await
            .expect_status(201, "registration under the limit");
    }
    let r = register("198.51.100.8").await;
    let r = r.expect_status(429, "fourth registration in a minute");
    assert_limited(&r);
    assert!(r.body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("registrations"));

    // Per user: a user's burst (4) is theirs wherever they come from.
    let user = user_from(&c, "198.51.100.5").await;
    let mut refused = None;
    for i in 0..40 {
        let r = get_from(&user, "/api/v1/me", &format!("203.0.113.{i}")).await;
        if r.status == 429 {
            refused = Some((i, r));
            break;
        }
        r.expect_status(200, "me under the user's limit");
    }
    let (i, r) = refused.expect("the user's requests were never limited");
    assert!((2..=8).contains(&i), "{i} passed before the user limit");
    assert_limited(&r);
    assert!(r.body["detail"].as_str().unwrap_or("").contains("account"));
    let other = user_from(&c, "198.51.100.6").await;
    get_from(&other, "/api/v1/me", "198.51.100.7")
        .await
        .expect_status(200, "another user is not limited");
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    // The trusted proxy is not the peer the test connects from.
    let server = AgoraProcess::start(ServerOptions::default().with_rate_limits().args([
        "--rate-limit-per-ip",
        "5",
        "--trusted-proxy",
        "127.0.0.2",
    ]));
    let c = server.client();
    let (r, _) = exhaust(&c, "/api/v1/products", "198.51.100.1").await;
    assert_limited(&r);
    let r = get_from(&c, "/api/v1/products", "198.51.100.2").await;
    assert_eq!(
        r.status, 429,
        "a forged X-Forwarded-For must not buy a new bucket"
    );
}
