//! Idempotency-Key semantics of POST /api/v1/orders.

use agora_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_checkout_replays_the_first_response() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(1_500, 10).await;
    let (user, _) = shop.new_user().await;
    user.add_to_cart(&sku, 2).await;

    let key = unique_key();
    let body = checkout_body(card(CARD_OK));
    let first = user.checkout(Some(&key), &body).await;
    let first = first.expect_status(201, "first checkout");
    let order_id = first.str_field("order_id");
    assert_eq!(
        first.header("location"),
        Some(format!("/api/v1/orders/{order_id}").as_str()),
        "the new order is named in Location"
    );
    assert_eq!(
        first.header("idempotent-replayed"),
        None,
        "a first answer is no replay"
    );

    let again = user.checkout(Some(&key), &body).await;
    assert_eq!(
        again.header("idempotent-replayed"),
        Some("true"),
        "a retried key's answer says it is a replay"
    );
    assert_eq!(
        again.status, first.status,
        "retry with the same key must answer the same status: {}",
        again.text
    );
    assert_eq!(
        again.body["order_id"],
        order_id.as_str(),
        "retry with the same key must return the same order: {}",
        again.text
    );
    let inv = admin.inventory(&sku).await;
    assert_eq!(
        (inv.available, inv.accounted()),
        (8, 10),
        "stock must be reserved once: {inv:?}"
    );

    wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    wait_for_cart_without(&user, &sku).await;
    // Even after the order completed and the cart emptied, the key replays the order.
    let late = user.checkout(Some(&key), &body).await;
    assert_eq!(
        (late.status, late.body["order_id"].as_str()),
        (201, Some(order_id.as_str())),
        "late retry with the same key must replay the original response: {}",
        late.text
    );

    // Same key, different body.
    let other_body = checkout_body(upi("success@upi"));
    let r = user.checkout(Some(&key), &other_body).await;
    assert_eq!(r.status, 422, "same key + different body: {}", r.text);
    r.assert_problem("same key + different body");
    let mut different_address = checkout_body(card(CARD_OK));
    different_address["shipping_address"]["city"] = json!("Mysuru");
    let r = user.checkout(Some(&key), &different_address).await;
    assert_eq!(
        r.status, 422,
        "same key + different shipping address: {}",
        r.text
    );
    r.assert_problem("same key + different shipping address");

    // Missing key: rejected, nothing reserved, cart untouched.
    user.add_to_cart(&sku, 1).await;
    let r = user.checkout(None, &body).await;
    assert_eq!(
        r.status, 400,
        "checkout without Idempotency-Key: {}",
        r.text
    );
    r.assert_problem("missing Idempotency-Key");
    assert_eq!(cart_quantity(&user.cart().await, &sku), 1);

    let orders = user.orders().await;
    assert_eq!(
        orders.len(),
        1,
        "retries must not create orders: {orders:#?}"
    );
    let inv = admin.inventory(&sku).await;
    assert_eq!(
        inv,
        Inventory {
            on_hand: 8,
            reserved: 0,
            available: 8,
            sold: 2
        },
        "stock after one delivered order of 2"
    );

    // A 128-character key is still valid.
    let long_key = "k".repeat(128);
    let r = user.checkout(Some(&long_key), &body).await;
    assert_eq!(r.status, 201, "128-char Idempotency-Key: {}", r.text);
    let second = r.str_field("order_id");
    assert_ne!(second, order_id);

    // Keys are per user: another user's identical key and body is a new order.
    let (stranger, _) = shop.new_user().await;
    stranger.add_to_cart(&sku, 1).await;
    let r = stranger.checkout(Some(&key), &body).await;
    assert_eq!(
        r.status, 201,
        "another user reusing a key must get their own order: {}",
        r.text
    );
    let theirs = r.str_field("order_id");
    assert_ne!(
        theirs, order_id,
        "another user's request with the same key must never receive my order"
    );
    stranger.order(&theirs).await;
    wait_for_order(&user, &second, &["DELIVERED"]).await;
    wait_for_order(&stranger, &theirs, &["DELIVERED"]).await;
    let inv = admin.inventory(&sku).await;
    assert_eq!(
        (inv.sold, inv.available, inv.reserved),
        (4, 6, 0),
        "{inv:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_answer_is_replayed_too() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(800, 1).await;
    let (user, _) = shop.new_user().await;
    user.add_to_cart(&sku, 2).await;
    let key = unique_key();
    let body = checkout_body(card(CARD_OK));
    let first = user.checkout(Some(&key), &body).await;
    assert_eq!(first.status, 409, "2 units of 1 in stock: {}", first.text);
    first.assert_problem("out of stock");
    let id = first.str_field("order_id");
    let again = user.checkout(Some(&key), &body).await;
    assert_eq!(
        (again.status, again.body["order_id"].as_str()),
        (409, Some(id.as_str())),
        "same key + same body must replay the out-of-stock answer: {}",
        again.text
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let inv = admin.inventory(&sku).await;
    assert_eq!(
        (inv.available, inv.reserved, inv.sold),
        (1, 0, 0),
        "{inv:?}"
    );
    // The refused checkout gives its lines back to the cart.
    poll_until(
        "the cart to get its lines back",
        Duration::from_secs(10),
        || async {
            let cart = user.cart().await;
            match cart["items"].as_array().map(Vec::len) {
                Some(1) if cart["items"][0]["quantity"] == 2 => Ok(()),
                _ => Err(cart.to_string()),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_added_right_after_a_checkout_is_kept_for_the_next_one() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(900, 100).await;
    let (user, _) = shop.new_user().await;
    for round in 0..20 {
        user.add_to_cart(&sku, 1).await;
        let r = user
            .checkout(Some(&unique_key()), &checkout_body(card(CARD_OK)))
            .await;
        assert_eq!(r.status, 201, "round {round}: {}", r.text);
        let order = user.order(&r.str_field("order_id")).await;
        assert_eq!(
            order["lines"][0]["quantity"], 1,
            "round {round}: each order takes exactly the line added for it: {order}"
        );
    }
    let inv = admin.inventory(&sku).await;
    assert_eq!(inv.reserved + inv.sold, 20, "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_double_submit_creates_one_order() {
    const ROUNDS: u64 = 6;
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(600, 20).await;

    for round in 0..ROUNDS {
        let (user, _) = shop.new_user().await;
        user.add_to_cart(&sku, 1).await;
        let key = unique_key();
        let body = checkout_body(card(CARD_OK));
        let a = user.checkout_request(Some(&key), &body);
        let b = user.checkout_request(Some(&key), &body);
        let (ua, ub) = (user.clone(), user.clone());
        let ta = tokio::spawn(async move { ua.send(a).await });
        let tb = tokio::spawn(async move { ub.send(b).await });
        let (ra, rb) = (ta.await.expect("task a"), tb.await.expect("task b"));
        assert_eq!(
            ra.status, 201,
            "round {round}: first of two simultaneous submits: {}",
            ra.text
        );
        assert_eq!(
            rb.status, 201,
            "round {round}: second of two simultaneous submits must replay 201: {}",
            rb.text
        );
        let id = ra.str_field("order_id");
        assert_eq!(
            rb.body["order_id"],
            id.as_str(),
            "round {round}: simultaneous submits with one key must yield one order"
        );
        let orders = user.orders().await;
        assert_eq!(
            orders.len(),
            1,
            "round {round}: exactly one order expected: {orders:#?}"
        );
        wait_for_order(&user, &id, &["DELIVERED"]).await;
    }
    let inv = wait_for_inventory(&admin, &sku, "every order settled", |i| i.reserved == 0).await;
    assert_eq!(
        (inv.sold, inv.available),
        (ROUNDS, 20 - ROUNDS),
        "each double submit must sell exactly one unit: {inv:?}"
    );
}
