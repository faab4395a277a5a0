//! Shipping against the real binary: quotes from several couriers, the chosen rate in the
//! order total, tracking events, and a delivery that fails every attempt and ends RETURNED,
//! restocked and refunded.

use agora_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn couriers_quote_and_the_chosen_rate_is_in_the_total() {
    let srv = AgoraProcess::start(ServerOptions::fast());
    let shop = srv.client();
    let admin = srv.admin().await;

    let q = shop
        .get("/api/v1/shipping/quotes?city=Bengaluru")
        .await
        .expect_status(200, "quotes");
    let quotes = q.body["quotes"].as_array().expect("quotes").clone();
    assert!(quotes.len() >= 2, "{}", q.text);
    let price = |qs: &[Value], c: &str| {
        qs.iter()
            .find(|x| x["courier"] == c)
            .and_then(|x| x["price"]["amount_minor"].as_u64())
            .unwrap_or_else(|| panic!("no {c} quote"))
    };
    let prices: Vec<u64> = quotes
        .iter()
        .map(|x| x["price"]["amount_minor"].as_u64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "cheapest first");
    assert!(quotes
        .iter()
        .all(|x| x["eta_days_min"].as_u64() <= x["eta_days_max"].as_u64()));
    let swift = price(&quotes, "swift");
    assert!(swift > 0);
    // Elsewhere costs at least as much.
    let far = shop
        .get("/api/v1/shipping/quotes?city=Shillong")
        .await
        .expect_status(200, "quotes elsewhere");
    assert!(price(far.body["quotes"].as_array().unwrap(), "swift") >= swift);
    for bad in ["/api/v1/shipping/quotes", "/api/v1/shipping/quotes?city="] {
        let r = shop.get(bad).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        r.assert_problem(bad);
    }

    // The new routes are in the API document.
    let doc = shop
        .get("/openapi.json")
        .await
        .expect_status(200, "openapi");
    for path in [
        "/api/v1/shipping/quotes",
        "/api/v1/payments/webhook",
        "/api/v1/orders/{order_id}/refunds",
        "/api/v1/orders/{order_id}/payments",
        "/api/v1/me/wallet",
        "/api/v1/me/wallet/top-up",
    ] {
        assert!(doc.body["paths"][path].is_object(), "{path} not documented");
    }

    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(20_000, 5).await;
    user.add_to_cart(&sku, 2).await;
    // An unknown courier: 422 naming the field, and the cart keeps its lines.
    let mut body = checkout_body(card("4242424242424242"));
    body["shipping"] = json!({"courier": "pigeon"});
    let r = user.checkout(Some(&unique_key()), &body).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["field"], "shipping.courier", "{}", r.text);
    assert_eq!(cart_quantity(&user.cart().await, &sku), 2);

    body["shipping"] = json!({"courier": "swift"});
    let order_id = user
        .checkout(Some(&unique_key()), &body)
        .await
        .expect_status(201, "checkout with swift")
        .str_field("order_id");
    let o = user.order(&order_id).await;
    assert_eq!(o["total"]["amount_minor"], 2 * 20_000 + swift, "{o}");
    assert_eq!(o["shipping"]["courier"], "swift", "{o}");
    assert_eq!(o["shipping"]["price"]["amount_minor"], swift, "{o}");
    let o = wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    let (s, events) = shipment_of(&user, &o).await;
    assert_eq!(s.body["courier"], "swift", "{}", s.text);
    assert_eq!(s.body["delivery_attempts"], 1, "{}", s.text);
    assert_eq!(
        events,
        [
            "CREATED",
            "PICKED_UP",
            "IN_TRANSIT",
            "OUT_FOR_DELIVERY",
            "DELIVERED"
        ]
    );

    // No courier chosen: the free default, as before.
    user.add_to_cart(&sku, 1).await;
    let order_id = user.place_order(card("4242424242424242")).await;
    let o = user.order(&order_id).await;
    assert_eq!(o["total"]["amount_minor"], 20_000, "{o}");
    assert_eq!(o["shipping"]["courier"], "agora-post", "{o}");
}

#[tokio::test]
async fn a_delivery_that_fails_every_attempt_is_returned_restocked_and_refunded() {
    let srv = AgoraProcess::start(ServerOptions::fast());
    let shop = srv.client();
    let admin = srv.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(15_000, 4).await;
    user.add_to_cart(&sku, 3).await;
    let mut body = checkout_body(card("4242424242424242"));
    // The courier's test city: every delivery attempt fails.
    body["shipping_address"]["city"] = json!("Nowhere");
    body["shipping"] = json!({"courier": "nightjar"});
    let order_id = user
        .checkout(Some(&unique_key()), &body)
        .await
        .expect_status(201, "checkout")
        .str_field("order_id");
    let o = wait_for_order_within(&user, &order_id, &["REFUNDED"], Duration::from_secs(60)).await;
    let h = history_statuses(&o);
    assert!(
        h.ends_with(&["SHIPPED".into(), "RETURNED".into(), "REFUNDED".into()]),
        "{h:?}"
    );
    assert_eq!(o["cancel_reason"], "delivery_failed", "{o}");
    let (s, events) = shipment_of(&user, &o).await;
    assert_eq!(s.body["status"], "RETURNED", "{}", s.text);
    assert_eq!(
        events.iter().filter(|e| *e == "DELIVERY_FAILED").count(),
        3,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "OUT_FOR_DELIVERY").count(),
        3,
        "each failure retried until the last: {events:?}"
    );
    assert!(s.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["at"].is_string()));

    // The money went back in full (shipping included) and the goods are on the shelf.
    let p = user
        .get(&format!("/api/v1/orders/{order_id}/payments"))
        .await
        .expect_status(200, "payments");
    assert_eq!(p.body["status"], "refunded", "{}", p.text);
    assert_eq!(p.body["refunded"], p.body["amount"], "{}", p.text);
    assert_eq!(
        p.body["amount"]["amount_minor"].as_u64(),
        o["total"]["amount_minor"].as_u64()
    );
    let inv = wait_for_inventory(&admin, &sku, "returned units back in stock", |i| {
        i.available == 4
    })
    .await;
    assert_eq!((inv.sold, inv.reserved), (0, 0), "{inv:?}");
    wait_for_notifications(&user, &order_id, &["ORDER_RETURNED", "REFUND_ISSUED"]).await;
}

/// The order's shipment as `GET /shipments/{id}` answers it, and its tracking statuses in order.
async fn shipment_of(user: &Client, order: &Value) -> (Resp, Vec<String>) {
    let shipment_id = order["shipment_id"].as_str().expect("shipment id");
    let s = user
        .get(&format!("/api/v1/shipments/{shipment_id}"))
        .await
        .expect_status(200, "shipment");
    let events = s.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect();
    (s, events)
}
