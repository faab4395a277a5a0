//! Accounts: lockout after failed logins per (email, client address) (and its end), refresh
//! tokens (rotation, reuse,
//! logout, expiry of access tokens) and the profile at `/me` with its validation and its
//! versions (`If-Match`).

use agora_tests::{poll_until, unique_email, AgoraProcess, Client, ServerOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct-horse-1";

async fn login_raw(c: &Client, email: &str, password: &str) -> agora_tests::Resp {
    c.post(
        "/api/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn registered(c: &Client) -> String {
    let email = unique_email();
    c.register(&email, PASSWORD, "Lock Smith")
        .await
        .expect_status(201, "register");
    email
}

fn retry_after(r: &agora_tests::Resp) -> u64 {
    r.retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After on {r:?}"))
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_for_a_growing_interval() {
    let server = AgoraProcess::start(ServerOptions::default().args(["--lockout-base-ms", "1000"]));
    let c = server.client();
    let email = registered(&c).await;
    for i in 0..5 {
        let r = login_raw(&c, &email, "wrong-password").await;
        r.expect_status(401, &format!("failure {i}"));
    }
    let locked_at = Instant::now();
    // Locked: even the right password is not checked.
    let r = login_raw(&c, &email, PASSWORD).await;
    let r = r.expect_status(429, "locked login");
    r.assert_problem("locked login");
    assert_eq!(r.body["type"], "/problems/account-locked");
    assert_eq!(retry_after(&r), 1);
    // Unlocked after the interval.
    poll_until("the lock ends", Duration::from_secs(10), || async {
        let r = login_raw(&c, &email, PASSWORD).await;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    })
    .await;
    assert!(locked_at.elapsed() >= Duration::from_millis(800));
    // The success forgot the failures: five more are needed, and then the lock doubles
    // after each further failure.
    for _ in 0..5 {
        login_raw(&c, &email, "wrong-password")
            .await
            .expect_status(401, "after reset");
    }
    let r = login_raw(&c, &email, PASSWORD)
        .await
        .expect_status(429, "locked again");
    assert_eq!(retry_after(&r), 1);
    poll_until("the second lock ends", Duration::from_secs(10), || async {
        let r = login_raw(&c, &email, "wrong-password").await;
        if r.status == 401 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    })
    .await;
    let r = login_raw(&c, &email, PASSWORD)
        .await
        .expect_status(429, "doubled lock");
    assert_eq!(
        retry_after(&r),
        2,
        "the sixth failure locks for twice as long"
    );
}

/// A login of `email` with `password` through the trusted proxy, as client `xff`.
async fn login_from(c: &Client, xff: &str, email: &str, password: &str) -> agora_tests::Resp {
    c.send(
        c.req(reqwest::Method::POST, "/api/v1/auth/login")
            .header("x-forwarded-for", xff)
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn a_stranger_locks_only_their_own_address_out_and_unknown_emails_lock_alike() {
    // Behind a trusted proxy (the test), so that each X-Forwarded-For is a client address.
    let server = AgoraProcess::start(ServerOptions::default().with_rate_limits().args([
        "--trusted-proxy",
        "127.0.0.1",
        "--rate-limit-login-per-min",
        "1000",
    ]));
    let c = server.client();
    let email = registered(&c).await;
    let unknown = unique_email();
    for target in [&email, &unknown] {
        for i in 0..5 {
            login_from(&c, "203.0.113.66", target, "wrong-password")
                .await
                .expect_status(401, &format!("stranger's failure {i}"));
        }
        let r = login_from(&c, "203.0.113.66", target, PASSWORD).await;
        let r = r.expect_status(429, "the stranger's address is locked out");
        assert_eq!(r.body["type"], "/problems/account-locked");
    }
    // The owner, from their own address, still logs in.
    login_from(&c, "198.51.100.20", &email, PASSWORD)
        .await
        .expect_status(200, "the owner is not locked out by a stranger");
}

async fn refresh(c: &Client, token: &str) -> agora_tests::Resp {
    c.post("/api/v1/auth/refresh", &json!({"refresh_token": token}))
        .await
}

fn tokens(r: &agora_tests::Resp) -> (String, String) {
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_u64().is_some());
    (r.str_field("access_token"), r.str_field("refresh_token"))
}

#[tokio::test]
async fn refresh_tokens_rotate_and_are_revoked_by_logout_and_by_reuse() {
    let server = AgoraProcess::start(ServerOptions::default());
    let c = server.client();
    let email = registered(&c).await;
    let r = login_raw(&c, &email, PASSWORD)
        .await
        .expect_status(200, "login");
    let (_, r1) = tokens(&r);
    // Rotation: a new pair; the new access token works.
    let r = refresh(&c, &r1).await.expect_status(200, "refresh r1");
    let (a2, r2) = tokens(&r);
    assert_ne!(r1, r2);
    c.with_token(&a2)
        .get("/api/v1/me")
        .await
        .expect_status(200, "me with the refreshed token");
    let (_, r3) = tokens(&refresh(&c, &r2).await.expect_status(200, "refresh r2"));
    // Logout revokes; a refresh after it is refused.
    let r = c
        .post("/api/v1/auth/logout", &json!({"refresh_token": r3}))
        .await;
    assert_eq!(r.status, 204, "logout: {r:?}");
    refresh(&c, &r3)
        .await
        .expect_status(401, "refresh after logout")
        .assert_problem("refresh after logout");
    // A rotated token presented again is refused, and revokes the session it was part of.
    let (_, r4) = tokens(
        &login_raw(&c, &email, PASSWORD)
            .await
            .expect_status(200, "login 2"),
    );
    let (_, r5) = tokens(&refresh(&c, &r4).await.expect_status(200, "refresh r4"));
    refresh(&c, &r4)
        .await
        .expect_status(401, "reuse of a rotated token");
    refresh(&c, &r5)
        .await
        .expect_status(401, "the successor of a replayed token is revoked too");
    // Garbage is a 401 problem, not a 500.
    for bad in [
        "",
        "x",
        &"a".repeat(5000),
        &format!("{}.{}", "u", "zz".repeat(32)),
    ] {
        refresh(&c, bad)
            .await
            .expect_status(401, "malformed refresh token");
    }
    c.post("/api/v1/auth/refresh", &json!({}))
        .await
        .expect_status(422, "missing refresh_token");
}

#[tokio::test]
async fn an_expired_access_token_is_refused_and_a_refresh_gets_a_new_one() {
    let server =
        AgoraProcess::start(ServerOptions::default().args(["--access-token-ttl-secs", "2"]));
    let c = server.client();
    let email = registered(&c).await;
    let r = login_raw(&c, &email, PASSWORD)
        .await
        .expect_status(200, "login");
    assert_eq!(r.body["expires_in"], 2);
    let (access, refresh_token) = tokens(&r);
    let authed = c.with_token(&access);
    authed
        .get("/api/v1/me")
        .await
        .expect_status(200, "fresh token");
    let r = poll_until(
        "the access token expires",
        Duration::from_secs(10),
        || async {
            let r = authed.get("/api/v1/me").await;
            if r.status == 401 {
                Ok(r)
            } else {
                Err(format!("{}", r.status))
            }
        },
    )
    .await;
    r.assert_problem("expired token");
    assert!(r.body["detail"].as_str().unwrap_or("").contains("expired"));
    let (access, _) = tokens(
        &refresh(&c, &refresh_token)
            .await
            .expect_status(200, "refresh"),
    );
    c.with_token(&access)
        .get("/api/v1/me")
        .await
        .expect_status(200, "token from the refresh");
}

fn address(label: &str) -> Value {
    json!({"label": label, "name": "Asha", "line1": "1 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"})
}

#[tokio::test]
async fn the_profile_reads_and_changes_with_validation() {
    let server = AgoraProcess::start(ServerOptions::default());
    let (me, email) = server.client().new_user().await;
    let r = me.get("/api/v1/me").await.expect_status(200, "get me");
    assert_eq!(r.body["email"], email);
    assert_eq!(r.body["role"], "customer");
    assert_eq!(r.body["notification_channels"], json!(["email"]));
    assert_eq!(r.body["phone"], Value::Null);
    assert_eq!(r.body["addresses"], json!([]));
    server
        .client()
        .get("/api/v1/me")
        .await
        .expect_status(401, "anonymous");

    let patch = |body: Value| {
        let me = me.clone();
        async move {
            me.send(me.req(reqwest::Method::PATCH, "/api/v1/me").json(&body))
                .await
        }
    };
    let cases = [
        (json!({"phone": "12345"}), "phone"),
        (json!({"phone": "+91 98765"}), "phone"),
        (
            json!({"notification_channels": ["sms"]}),
            "notification_channels",
        ),
        (
            json!({"notification_channels": []}),
            "notification_channels",
        ),
        (
            json!({"notification_channels": ["fax"]}),
            "notification_channels",
        ),
        (
            json!({"notification_channels": ["email", "email"]}),
            "notification_channels",
        ),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (
            json!({"addresses": (0..6).map(|i| address(&format!("a{i}"))).collect::<Vec<_>>()}),
            "addresses",
        ),
        (
            json!({"addresses": [address(&"l".repeat(41))]}),
            "addresses[0].label",
        ),
        (
            json!({"addresses": [{"label": "home", "name": "A", "line1": "1 Road", "city": "Pune", "postal_code": "411001", "country": "india"}]}),
            "addresses[0].country",
        ),
        (
            json!({"addresses": [{"label": "home", "name": "A", "line1": "1 Road", "city": "Pune", "postal_code": "<script>", "country": "IN"}]}),
            "addresses[0].postal_code",
        ),
    ];
    for (body, field) in cases {
        let r = patch(body.clone()).await;
        let r = r.expect_status(422, &format!("{body}"));
        r.assert_problem("invalid patch");
        assert_eq!(r.body["field"], field, "{body}");
    }
    patch(json!({"nickname": "x"}))
        .await
        .expect_status(422, "unknown field");
    // Nothing above changed anything.
    let r = me.get("/api/v1/me").await;
    assert_eq!(r.body["notification_channels"], json!(["email"]));

    let r = patch(json!({"name": "Asha R", "phone": "+919876543210", "addresses": [address("home"), address("office")], "notification_channels": ["email", "whatsapp"]}))
        .await
        .expect_status(200, "valid patch");
    assert_eq!(r.body["name"], "Asha R");
    let r = me
        .get("/api/v1/me")
        .await
        .expect_status(200, "get after patch");
    assert_eq!(r.body["phone"], "+919876543210");
    assert_eq!(r.body["addresses"][1]["label"], "office");
    assert_eq!(
        r.body["notification_channels"],
        json!(["email", "whatsapp"])
    );
    // Two devices edit from the same read: the second, sent with If-Match, is refused.
    let etag = r
        .header("etag")
        .expect("a read carries an ETag")
        .to_string();
    let edit_if = |tag: String, body: Value| {
        let me = me.clone();
        async move {
            let rb = me
                .req(reqwest::Method::PATCH, "/api/v1/me")
                .header("If-Match", tag)
                .json(&body);
            me.send(rb).await
        }
    };
    let first = edit_if(etag.clone(), json!({"name": "Asha Rao"}))
        .await
        .expect_status(200, "the first device");
    assert_ne!(first.header("etag"), Some(etag.as_str()));
    let second = edit_if(etag, json!({"name": "A. Rao"})).await;
    assert_eq!(second.status, 412, "{}", second.text);
    second.assert_problem("a stale If-Match");
    let r = me
        .get("/api/v1/me")
        .await
        .expect_status(200, "get after 412");
    assert_eq!(r.body["name"], "Asha Rao", "the stale edit changed nothing");
    patch(json!({"name": "Asha R"}))
        .await
        .expect_status(200, "without If-Match: any version");
    // The phone cannot go while WhatsApp needs it; it can once email alone is chosen.
    let r = patch(json!({"phone": null}))
        .await
        .expect_status(422, "phone removed under whatsapp");
    assert_eq!(r.body["field"], "notification_channels");
    let r = patch(json!({"phone": null, "notification_channels": ["email"]}))
        .await
        .expect_status(200, "phone removed");
    assert_eq!(r.body["phone"], Value::Null);
    assert_eq!(r.body["name"], "Asha R", "absent fields keep their value");
}

#[tokio::test]
async fn look_alike_emails_are_one_account_and_invisible_characters_are_refused() {
    let server = AgoraProcess::start(ServerOptions::default());
    let c = server.client();
    let local = format!("lookalike{}", unique_email().replace(['@', '.'], ""));
    let email = format!("{local}@agora.local");
    c.register(&email, PASSWORD, "Look Alike")
        .await
        .expect_status(201, "register");
    // Fullwidth letters and upper case are the same address after NFKC: 409, and the
    // account logs in under either spelling.
    let fullwidth: String = local
        .chars()
        .map(|ch| match ch {
            'a'..='z' => char::from_u32(ch as u32 - 'a' as u32 + 0xFF41).unwrap_or(ch),
            _ => ch,
        })
        .collect();
    let variant = format!("{fullwidth}@AGORA.local");
    let r = c.register(&variant, PASSWORD, "Look Alike").await;
    assert_eq!(r.status, 409, "{variant}: {}", r.text);
    login_raw(&c, &variant, PASSWORD)
        .await
        .expect_status(200, "login under the fullwidth spelling");
    // Zero-width space, soft hyphen, BOM in the email, a newline in the name: 422.
    for invisible in ["\u{200b}", "\u{ad}", "\u{feff}"] {
        let e = format!("{local}{invisible}@agora.local");
        let r = c.register(&e, PASSWORD, "Look Alike").await;
        assert_eq!(r.status, 422, "{e:?}: {}", r.text);
    }
    let r = c
        .register(&unique_email(), PASSWORD, "Look\nBcc: everyone")
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["field"], "name", "{}", r.text);
}
