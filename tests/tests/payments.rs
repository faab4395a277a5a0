//! Payments against the real binary: signed webhooks (forged, stale, duplicated, out of
//! order), the payment gateway as a separate process (`agora payment-gateway-sim`), refunds in
//! full and per line, the wallet, and the payment history of an order.

use agora_http_edge::webhook;
use agora_tests::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "whsec-agora-tests-0123456789";
/// The shop's API key at the gateway process.
const API_KEY: &str = "agora-gateway-key-0123456789";
/// Another merchant's API key at the gateway process.
const OTHER_KEY: &str = "other-merchant-key-0123456789";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A node with fast courier legs and the webhook secret.
fn node(extra_args: Vec<String>) -> AgoraProcess {
    AgoraProcess::start(ServerOptions {
        extra_args,
        env: vec![
            ("AGORA_WEBHOOK_SECRET".into(), SECRET.into()),
            ("AGORA_GATEWAY_API_KEY".into(), API_KEY.into()),
        ],
        ..ServerOptions::fast()
    })
}

/// Sends a webhook signed with `secret` at unix time `t`.
async fn post_webhook(shop: &Client, secret: &str, t: u64, event: &Value) -> Resp {
    let body = serde_json::to_vec(event).expect("event json");
    let sig = webhook::sign(secret.as_bytes(), t, &body);
    shop.send(
        shop.anonymous()
            .req(Method::POST, "/api/v1/payments/webhook")
            .header("agora-signature", sig)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

fn event(id: &str, kind: &str, order_id: &str) -> Value {
    json!({"id": id, "type": kind, "created": now_secs(), "data": {"order_id": order_id, "amount_minor": 0}})
}

/// A `charge.succeeded` event reporting a card charge of `amount_minor` for `order_id`, under
/// the shop's own payment id.
fn success(id: &str, order_id: &str, amount_minor: u64) -> Value {
    let mut ev = event(id, "charge.succeeded", order_id);
    ev["data"] = json!({"order_id": order_id, "amount_minor": amount_minor, "currency": "INR",
        "payment_id": format!("{order_id}:charge"), "method": "card"});
    ev
}

/// The value of counter `name` with `label` (0 when absent) on the node's metrics.
async fn counter(srv: &AgoraProcess, name: &str, label: &str) -> u64 {
    let m = srv
        .admin_port_client()
        .get("/metrics")
        .await
        .expect_status(200, "metrics");
    m.text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The payment history of an order (asserting 200).
async fn payments_of(client: &Client, order_id: &str) -> Value {
    client
        .get(&format!("/api/v1/orders/{order_id}/payments"))
        .await
        .expect_status(200, "payment history")
        .body
}

/// Checks out the caller's cart with `body` under a fresh key; returns the order id.
async fn checkout_with(client: &Client, body: &Value) -> String {
    client
        .checkout(Some(&unique_key()), body)
        .await
        .expect_status(201, "checkout")
        .str_field("order_id")
}

async fn refund(client: &Client, order_id: &str, key: &str, body: &Value) -> Resp {
    client
        .send(
            client
                .req(Method::POST, &format!("/api/v1/orders/{order_id}/refunds"))
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
}

/// Polls the payment history until every entry has succeeded (and there are `n`).
async fn wait_for_entries(client: &Client, order_id: &str, n: usize) -> Value {
    poll_until(
        &format!("{n} settled payment entries of {order_id}"),
        Duration::from_secs(30),
        || async {
            let p = payments_of(client, order_id).await;
            let entries = p["entries"].as_array().cloned().unwrap_or_default();
            if entries.len() == n && entries.iter().all(|e| e["status"] == "succeeded") {
                Ok(p)
            } else {
                Err(p.to_string())
            }
        },
    )
    .await
}

#[tokio::test]
async fn webhooks_need_a_valid_fresh_signature_and_take_effect_once_in_any_order() {
    let srv = node(vec![]);
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(10_000, 5).await;
    user.add_to_cart(&sku, 2).await;
    // A card the in-process gateway never answers: the webhooks below decide.
    let order_id = user.place_order(card("4000000000000119")).await;
    let o = wait_for_order(&user, &order_id, &["PAYMENT_PROCESSING"]).await;
    let total = o["total"]["amount_minor"].as_u64().expect("total");

    // Validly signed successes that do not match the payment's own charge (amount, currency,
    // payment id, method): refused with 409, counted, and the order is not confirmed.
    let mut wrong = vec![success("evt_wrong_amount", &order_id, 1)];
    for (field, value) in [
        ("currency", json!("USD")),
        ("payment_id", json!("attacker-key")),
        ("method", json!("upi")),
    ] {
        let mut ev = success(&format!("evt_wrong_{field}"), &order_id, total);
        ev["data"][field] = value;
        wrong.push(ev);
    }
    for ev in &wrong {
        let r = post_webhook(&shop, SECRET, now_secs(), ev).await;
        assert_eq!(r.status, 409, "{ev}: {}", r.text);
        r.assert_problem("mismatched success");
    }
    // Without the report of what was taken: 422.
    let bare = event("evt_bare", "charge.succeeded", &order_id);
    let r = post_webhook(&shop, SECRET, now_secs(), &bare).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let o = user.order(&order_id).await;
    assert_eq!(status_of(&o), "PAYMENT_PROCESSING", "{o}");
    assert_eq!(payments_of(&user, &order_id).await["status"], "processing");
    let mismatches = counter(&srv, "agora_payment_mismatches_total", "").await;
    assert_eq!(mismatches, 4, "every refused report counted");

    let ok = success("evt_test_ok", &order_id, total);
    // Forged (another secret), missing, stale and future signatures: 401, nothing changes.
    let r = post_webhook(&shop, "not-the-secret-at-all", now_secs(), &ok).await;
    r.assert_problem("forged signature");
    assert_eq!(r.status, 401, "{}", r.text);
    let r = shop
        .send(
            shop.req(Method::POST, "/api/v1/payments/webhook")
                .header("content-type", "application/json")
                .body(ok.to_string()),
        )
        .await;
    assert_eq!(r.status, 401, "missing signature: {}", r.text);
    let r = post_webhook(&shop, SECRET, now_secs() - 3600, &ok).await;
    assert_eq!(r.status, 401, "stale signature: {}", r.text);
    assert!(r.text.contains("window"), "{}", r.text);
    let r = post_webhook(&shop, SECRET, now_secs() + 3600, &ok).await;
    assert_eq!(r.status, 401, "future signature: {}", r.text);
    // A body changed after signing.
    let body = serde_json::to_vec(&ok).unwrap();
    let sig = webhook::sign(SECRET.as_bytes(), now_secs(), &body);
    let tampered = serde_json::to_vec(&event("evt_test_ok", "charge.failed", &order_id)).unwrap();
    let r = shop
        .send(
            shop.req(Method::POST, "/api/v1/payments/webhook")
                .header("agora-signature", sig)
                .body(tampered),
        )
        .await;
    assert_eq!(r.status, 401, "tampered body: {}", r.text);
    let o = user.order(&order_id).await;
    assert_eq!(status_of(&o), "PAYMENT_PROCESSING", "{o}");

    // A valid event, delivered twice: both acknowledged, the second as a duplicate.
    let first = post_webhook(&shop, SECRET, now_secs(), &ok)
        .await
        .expect_status(200, "webhook");
    assert_eq!(first.body["duplicate"], false, "{}", first.text);
    let again = post_webhook(&shop, SECRET, now_secs(), &ok)
        .await
        .expect_status(200, "duplicate webhook");
    assert_eq!(again.body["duplicate"], true, "{}", again.text);
    // Out of order: a late pending and a contradicting failure after the success.
    post_webhook(
        &shop,
        SECRET,
        now_secs(),
        &event("evt_test_late_pending", "charge.pending", &order_id),
    )
    .await
    .expect_status(200, "late pending");
    let mut failed = event("evt_test_late_fail", "charge.failed", &order_id);
    failed["data"]["reason"] = json!("card_declined");
    post_webhook(&shop, SECRET, now_secs(), &failed)
        .await
        .expect_status(200, "late failure");

    let o = wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    let confirmed = history_statuses(&o)
        .iter()
        .filter(|s| *s == "CONFIRMED")
        .count();
    assert_eq!(confirmed, 1, "confirmed once: {o}");
    let p = payments_of(&user, &order_id).await;
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(p["entries"][0]["status"], "succeeded", "{p}");
    // The stock was committed once.
    let inv = admin.inventory(&sku).await;
    assert_eq!((inv.sold, inv.available), (2, 3), "{inv:?}");

    // Malformed events (validly signed) are 400/422, never a 5xx.
    let r = post_webhook(&shop, SECRET, now_secs(), &json!({"id": "x"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = post_webhook(
        &shop,
        SECRET,
        now_secs(),
        &event("evt_x", "charge.exploded", &order_id),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
}

/// An `agora payment-gateway-sim` process on a free port; killed on drop.
struct GatewaySim {
    child: Child,
    url: String,
}

impl GatewaySim {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(agora_bin())
            .arg("payment-gateway-sim")
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("AGORA_WEBHOOK_SECRET", SECRET)
            .env(
                "AGORA_GATEWAY_TOKEN_KEY",
                "gateway-card-key-agora-tests-0123456789",
            )
            .env(
                "AGORA_GATEWAY_MERCHANTS",
                format!("agora={API_KEY},other={OTHER_KEY}"),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn agora payment-gateway-sim");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("read the gateway's first line");
        // Keep reading, so that the gateway never writes to a closed pipe.
        std::thread::spawn(move || {
            let mut rest = String::new();
            while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
                rest.clear();
            }
        });
        let url = first_base_url(&line)
            .unwrap_or_else(|| panic!("no URL in the gateway's first line: {line:?}"));
        GatewaySim { child, url }
    }
}

impl Drop for GatewaySim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_order_is_paid_and_refunded_through_the_gateway_process_with_duplicated_reordered_webhooks(
) {
    // Every event twice, every charge's pending event after its result.
    let gw = GatewaySim::start(&[
        "--duplicate-percent",
        "100",
        "--reorder-percent",
        "100",
        "--min-delay-ms",
        "5",
        "--max-delay-ms",
        "60",
    ]);
    let r = reqwest::get(format!("{}/healthz", gw.url))
        .await
        .expect("gateway healthz");
    assert!(r.status().is_success());
    let srv = node(vec!["--payment-gateway-url".into(), gw.url.clone()]);
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(25_000, 4).await;

    user.add_to_cart(&sku, 2).await;
    let order_id = user.place_order(card("4242424242424242")).await;
    let o = wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    assert_eq!(
        history_statuses(&o)
            .iter()
            .filter(|s| *s == "CONFIRMED")
            .count(),
        1,
        "{o}"
    );
    let p = payments_of(&user, &order_id).await;
    assert_eq!(
        p["entries"][0]["status"], "succeeded",
        "late pending ignored: {p}"
    );
    assert_eq!(p["amount"]["amount_minor"], 50_000, "{p}");

    // A refund goes through the gateway process too, and comes back as a webhook.
    refund(&user, &order_id, &unique_key(), &json!({}))
        .await
        .expect_status(201, "full refund");
    let p = wait_for_entries(&user, &order_id, 2).await;
    assert_eq!(p["refunded"]["amount_minor"], 50_000, "{p}");
    assert_eq!(p["status"], "refunded", "{p}");
    let inv = admin.inventory(&sku).await;
    assert_eq!(inv.sold, 2, "a refund is money only: {inv:?}");

    // A declined card, answered by the gateway process.
    user.add_to_cart(&sku, 1).await;
    let declined = user.place_order(card("4000000000000002")).await;
    let o = wait_for_order(&user, &declined, &["CANCELLED"]).await;
    assert!(
        o["cancel_reason"]
            .as_str()
            .unwrap_or("")
            .contains("card_declined"),
        "{o}"
    );
    wait_for_inventory(&admin, &sku, "the declined order's unit released", |i| {
        i.reserved == 0 && i.available == 2
    })
    .await;
}

/// Posts a charge to the gateway process with `api_key` (none: no `Authorization`).
async fn gateway_charge(gw: &GatewaySim, api_key: Option<&str>, body: &Value) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/charges", gw.url))
        .json(body);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("gateway answers").status().as_u16()
}

#[tokio::test]
async fn the_gateway_serves_only_its_merchants_and_a_cheap_charge_never_confirms_an_order() {
    let gw = GatewaySim::start(&["--min-delay-ms", "1", "--max-delay-ms", "5"]);
    let srv = node(vec!["--payment-gateway-url".into(), gw.url.clone()]);
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(14_900, 4).await;
    user.add_to_cart(&sku, 2).await;
    // The card the gateway never answers: the order waits on its payment.
    let order_id = user.place_order(card(CARD_NEVER_ANSWERS)).await;
    wait_for_order(&user, &order_id, &["PAYMENT_PROCESSING"]).await;

    // Cards are charged by token: the gateway makes one for its merchants only.
    let tokens = format!("{}/v1/tokens", gw.url);
    let body = json!({"number": CARD_OK});
    let http = reqwest::Client::new();
    let anonymous = http.post(&tokens).json(&body).send().await;
    assert_eq!(anonymous.expect("gateway answers").status().as_u16(), 401);
    let made = http.post(&tokens).bearer_auth(API_KEY).json(&body).send();
    let card_ref: Value = made
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("a card reference");
    assert_eq!(
        card_ref["last4"],
        &CARD_OK[CARD_OK.len() - 4..],
        "{card_ref}"
    );
    assert!(!card_ref.to_string().contains(CARD_OK), "{card_ref}");
    let cheap = |key: &str| {
        json!({"key": key, "order_id": order_id, "amount_minor": 1, "currency": "INR",
            "method": {"Card": card_ref}})
    };
    // Without a key, or with a wrong one: 401. Naming a webhook URL: refused.
    assert_eq!(gateway_charge(&gw, None, &cheap("evil-1")).await, 401);
    let wrong = Some("not-a-merchant-key-at-all");
    assert_eq!(gateway_charge(&gw, wrong, &cheap("evil-1")).await, 401);
    let mut named = cheap("evil-1");
    named["webhook_url"] = json!(format!("{}/api/v1/payments/webhook", srv.shop_url));
    assert_eq!(gateway_charge(&gw, Some(OTHER_KEY), &named).await, 422);
    // Another merchant's charge of the same order id is its own: its events never reach
    // this shop (that merchant registered no URL, so the gateway refuses to take money).
    assert_eq!(
        gateway_charge(&gw, Some(OTHER_KEY), &cheap("evil-1")).await,
        428
    );

    // Even with the shop's own key, a charge of ₹0.01 under another key makes a signed
    // success the shop refuses: the payment id and the amount are not its charge's. (The
    // shop registers its webhook URL when the gateway first answers it 428, which may
    // land just after the order shows PAYMENT_PROCESSING: until then this answers 428.)
    let status = poll_until(
        "the shop's webhook URL is registered",
        POLL_TIMEOUT,
        || async {
            match gateway_charge(&gw, Some(API_KEY), &cheap("evil-2")).await {
                428 => Err("the gateway still has no webhook URL for the shop".to_string()),
                s => Ok(s),
            }
        },
    )
    .await;
    assert_eq!(status, 200);
    poll_until("the refused report is counted", POLL_TIMEOUT, || async {
        match counter(&srv, "agora_payment_mismatches_total", "").await {
            0 => Err("not yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    let o = user.order(&order_id).await;
    assert_eq!(status_of(&o), "PAYMENT_PROCESSING", "{o}");
    let p = payments_of(&user, &order_id).await;
    assert_eq!(p["status"], "processing", "{p}");
}

#[tokio::test]
async fn refunds_per_line_and_in_full_never_exceed_what_was_paid() {
    let srv = node(vec![]);
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let (other, _) = shop.new_user().await;
    let a = admin.stocked_product(10_000, 10).await;
    let b = admin.stocked_product(3_000, 10).await;
    user.add_to_cart(&a, 2).await;
    user.add_to_cart(&b, 1).await;
    let mut body = checkout_body(card("4242424242424242"));
    body["shipping"] = json!({"courier": "swift"});
    let order_id = checkout_with(&user, &body).await;

    // An order that is never delivered (the courier's test city): refunds are refused
    // (cancel instead), whenever asked.
    user.add_to_cart(&b, 1).await;
    let mut nowhere = checkout_body(card("4242424242424242"));
    nowhere["shipping_address"]["city"] = json!("Nowhere");
    let undelivered = checkout_with(&user, &nowhere).await;
    let early = refund(&user, &undelivered, "early", &json!({})).await;
    assert_eq!(early.status, 409, "{}", early.text);
    early.assert_problem("refund before delivery");
    let o = wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    let paid = o["total"]["amount_minor"].as_u64().expect("total");
    assert_eq!(paid, 2 * 10_000 + 3_000 + 9_900, "{o}");

    // Bad input.
    let r = user
        .send(
            user.req(Method::POST, &format!("/api/v1/orders/{order_id}/refunds"))
                .json(&json!({})),
        )
        .await;
    assert_eq!(r.status, 400, "no Idempotency-Key: {}", r.text);
    let r = refund(
        &user,
        &order_id,
        "bad-qty",
        &json!({"lines": [{"sku": a, "quantity": 0}]}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = refund(
        &user,
        &order_id,
        "bad-sku",
        &json!({"lines": [{"sku": "NOT-IN-ORDER", "quantity": 1}]}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    // Someone else's order: not found.
    let r = refund(&other, &order_id, "theirs", &json!({})).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Per line: one unit of A.
    let line = json!({"lines": [{"sku": a, "quantity": 1}]});
    let r1 = refund(&user, &order_id, "line-1", &line)
        .await
        .expect_status(201, "per-line refund");
    assert_eq!(r1.body["amount"]["amount_minor"], 10_000, "{}", r1.text);
    // The same key again: the same refund; with another body: 422.
    let again = refund(&user, &order_id, "line-1", &line)
        .await
        .expect_status(201, "retried refund");
    assert_eq!(again.body["refund_id"], r1.body["refund_id"]);
    let r = refund(
        &user,
        &order_id,
        "line-1",
        &json!({"lines": [{"sku": b, "quantity": 1}]}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text);
    // Beyond the units paid for: 409.
    let r = refund(
        &user,
        &order_id,
        "line-2",
        &json!({"lines": [{"sku": a, "quantity": 2}]}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    r.assert_problem("refund beyond the units paid");

    // An admin refunds the rest (shipping included); nothing is left after that.
    let full = refund(&admin, &order_id, "admin-full", &json!({}))
        .await
        .expect_status(201, "full refund");
    assert_eq!(
        full.body["amount"]["amount_minor"].as_u64(),
        Some(paid - 10_000),
        "{}",
        full.text
    );
    let r = refund(
        &user,
        &order_id,
        "line-3",
        &json!({"lines": [{"sku": b, "quantity": 1}]}),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = refund(&user, &order_id, "full-2", &json!({})).await;
    assert_eq!(r.status, 409, "{}", r.text);

    // The history: the charge and two refunds, all settled, summing to what was paid.
    let p = wait_for_entries(&user, &order_id, 3).await;
    let entries = p["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["kind"], "charge");
    assert_eq!(entries[0]["amount"]["amount_minor"].as_u64(), Some(paid));
    assert!(entries[1..].iter().all(|e| e["kind"] == "refund"), "{p}");
    assert!(entries.iter().all(|e| e["created_at"].is_string()), "{p}");
    assert_eq!(p["refunded"]["amount_minor"].as_u64(), Some(paid), "{p}");
    let o = poll_until(
        "the order to show the refunds",
        Duration::from_secs(10),
        || async {
            let o = user.order(&order_id).await;
            if o["refunded"]["amount_minor"].as_u64() == Some(paid) {
                Ok(o)
            } else {
                Err(o.to_string())
            }
        },
    )
    .await;
    assert_eq!(status_of(&o), "DELIVERED", "{o}");
    // Money only: the goods stay sold.
    assert_eq!(admin.inventory(&a).await.sold, 2);
}

/// Tops up `user`'s wallet by `amount` under Idempotency-Key `key`.
async fn top_up_as(user: &Client, key: &str, amount: u64) -> Resp {
    user.send(
        user.req(Method::POST, "/api/v1/me/wallet/top-up")
            .header("Idempotency-Key", key)
            .json(&json!({ "amount_minor": amount })),
    )
    .await
}

#[tokio::test]
async fn the_wallet_is_topped_up_once_per_key_within_limits_and_pays_an_order() {
    let srv = node(vec![]);
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let w = user
        .get("/api/v1/me/wallet")
        .await
        .expect_status(200, "wallet");
    assert_eq!(w.body["balance"]["amount_minor"], 500_000, "{}", w.text);
    let r = shop.anonymous().get("/api/v1/me/wallet").await;
    assert_eq!(r.status, 401);

    let top_up = |key: &'static str, amount: u64| {
        let user = user.clone();
        async move { top_up_as(&user, key, amount).await }
    };
    let r = top_up("t1", 700_000).await.expect_status(200, "top-up");
    assert_eq!(r.body["balance"]["amount_minor"], 1_200_000, "{}", r.text);
    let r = top_up("t1", 700_000)
        .await
        .expect_status(200, "top-up retried");
    assert_eq!(r.body["balance"]["amount_minor"], 1_200_000, "once per key");
    assert_eq!(top_up("t1", 1_000).await.status, 422, "key reused");
    for bad in [0, 99, 10_000_001] {
        let r = top_up("t2", bad).await;
        assert_eq!(r.status, 422, "amount {bad}: {}", r.text);
        r.assert_problem("bad amount");
    }
    let r = user
        .send(
            user.req(Method::POST, "/api/v1/me/wallet/top-up")
                .json(&json!({"amount_minor": 1000})),
        )
        .await;
    assert_eq!(r.status, 400, "no key: {}", r.text);

    // More than the starting balance: only payable after the top-up.
    let sku = admin.stocked_product(1_000_000, 2).await;
    user.add_to_cart(&sku, 1).await;
    let order_id = user.place_order(wallet()).await;
    wait_for_order(&user, &order_id, &["CONFIRMED", "SHIPPED", "DELIVERED"]).await;
    let w = user.get("/api/v1/me/wallet").await;
    assert_eq!(w.body["balance"]["amount_minor"], 200_000, "{}", w.text);
    let p = payments_of(&user, &order_id).await;
    assert_eq!(p["method"], "wallet");
    assert_eq!(p["entries"][0]["status"], "succeeded", "{p}");

    // A wallet refund goes back to the wallet.
    wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    refund(
        &user,
        &order_id,
        "w-refund",
        &json!({"lines": [{"sku": sku, "quantity": 1}]}),
    )
    .await
    .expect_status(201, "wallet refund");
    poll_until(
        "the refund in the wallet",
        Duration::from_secs(10),
        || async {
            let w = user.get("/api/v1/me/wallet").await;
            if w.body["balance"]["amount_minor"] == 1_200_000 {
                Ok(())
            } else {
                Err(w.text)
            }
        },
    )
    .await;

    // More keys than the account remembers: the first ones still top up once (a key is kept
    // for the message retention time, not among the last 64).
    for i in 0..65 {
        top_up_as(&user, &format!("many-{i}"), 100)
            .await
            .expect_status(200, "a small top-up");
    }
    let before = user.get("/api/v1/me/wallet").await.body["balance"]["amount_minor"].clone();
    for (key, amount) in [("many-0", 100), ("t1", 700_000)] {
        let r = top_up_as(&user, key, amount)
            .await
            .expect_status(200, "an early key replayed");
        assert_eq!(
            r.body["balance"]["amount_minor"], before,
            "{key}: credited once"
        );
    }
}

/// Whether `haystack` holds `needle` anywhere.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Issue 17 item 11: checkout exchanges the card number for the gateway's token before any
/// entity sees it. The test cards still decide through their tokens (paid, declined,
/// insufficient funds, never answered), and afterwards no byte of `agora.redb` holds a number.
#[tokio::test]
async fn card_numbers_never_reach_the_store_and_the_test_cards_still_decide_through_tokens() {
    let mut srv = node(vec![]);
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(10_000, 8).await;
    let numbers = [
        "4242424242424242",
        "4000000000000002",
        "4000000000009995",
        "4000000000000119",
    ];
    let mut orders = Vec::new();
    for number in numbers {
        user.add_to_cart(&sku, 1).await;
        orders.push(user.place_order(card(number)).await);
    }
    wait_for_order(&user, &orders[0], &["DELIVERED"]).await;
    for (order_id, reason) in [
        (&orders[1], "card_declined"),
        (&orders[2], "insufficient_funds"),
    ] {
        let o = wait_for_order(&user, order_id, &["CANCELLED"]).await;
        let why = o["cancel_reason"].as_str().unwrap_or("");
        assert!(why.contains(reason), "{o}");
    }
    wait_for_order(&user, &orders[3], &["PAYMENT_PROCESSING"]).await;
    let paid = payments_of(&user, &orders[0]).await;
    assert_eq!(paid["method"], "card", "{paid}");

    assert!(srv.terminate().success());
    let store = std::fs::read(srv.data_dir().join("agora.redb")).expect("read agora.redb");
    assert!(holds(&store, b"tok_"), "the store holds the cards' tokens");
    for number in numbers {
        assert!(
            !holds(&store, number.as_bytes()),
            "card number {number} is in agora.redb"
        );
    }
}
