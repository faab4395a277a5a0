//! End-to-end order flows: payment methods to DELIVERED, payment failures,
//! reservation expiry, payment timeout, cancellation and refunds, privacy, and a history
//! longer than any page.

use std::time::{Duration, Instant};

use agora_tests::*;

/// Positions of `wanted` statuses inside `history`, asserting each appears in this relative order.
#[track_caller]
fn assert_history_in_order(order: &Value, wanted: &[&str]) {
    let history = history_statuses(order);
    let mut from = 0;
    for w in wanted {
        match history[from..].iter().position(|h| h == w) {
            Some(i) => from += i + 1,
            None => panic!(
                "order history must contain {wanted:?} in this order; missing {w:?} (after index {from}) in {history:?}; order {order}"
            ),
        }
    }
    for entry in order["history"].as_array().expect("history array") {
        assert!(
            entry.get("at").is_some_and(|a| !a.is_null()),
            "every history entry needs an 'at': {order}"
        );
    }
}

fn line_of<'a>(order: &'a Value, sku: &str) -> &'a Value {
    order["lines"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["sku"] == sku))
        .unwrap_or_else(|| panic!("order has no line for {sku}: {order}"))
}

/// Places one order of `qty` x a fresh product, waits for DELIVERED and checks every observable.
async fn delivered_flow(
    admin: &Client,
    user: &Client,
    payment: Value,
    method: &str,
    price: u64,
    qty: u64,
) -> (String, String) {
    let stock = 10;
    let sku = admin.stocked_product(price, stock).await;

    let cart = user.add_to_cart(&sku, qty).await;
    assert_eq!(cart_quantity(&cart, &sku), qty, "cart after add: {cart}");
    let line = cart["items"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["sku"] == sku.as_str()))
        .unwrap_or_else(|| panic!("cart lacks {sku}: {cart}"));
    assert_eq!(
        line["unit_price"]["amount_minor"], price,
        "cart line: {cart}"
    );
    assert_eq!(line["unit_price"]["currency"], "INR", "cart line: {cart}");
    assert_eq!(
        line["line_total"]["amount_minor"],
        price * qty,
        "cart: {cart}"
    );
    assert_eq!(cart["total"]["amount_minor"], price * qty, "cart: {cart}");

    let order_id = user.place_order(payment).await;

    // The reservation exists as soon as the order is acknowledged.
    let inv = admin.inventory(&sku).await;
    assert_eq!(
        inv.accounted(),
        stock,
        "{method}: stock not conserved: {inv:?}"
    );
    assert_eq!(
        inv.available,
        stock - qty,
        "{method}: stock must be reserved when checkout answers 201: {inv:?}"
    );

    let order = wait_for_order(user, &order_id, &["DELIVERED"]).await;
    assert_eq!(order["order_id"], order_id.as_str(), "{order}");
    let l = line_of(&order, &sku);
    assert_eq!(l["quantity"], qty, "{method}: line quantity: {order}");
    assert_eq!(
        l["unit_price_minor"], price,
        "{method}: unit price: {order}"
    );
    assert_eq!(
        order["lines"].as_array().map(Vec::len),
        Some(1),
        "{method}: exactly one line expected: {order}"
    );
    assert_eq!(order["total"]["amount_minor"], price * qty, "{order}");
    assert_eq!(order["total"]["currency"], "INR", "{order}");
    assert_eq!(
        order["payment"]["status"], "succeeded",
        "{method}: payment status of a delivered order: {order}"
    );
    assert_eq!(order["payment"]["method"], method, "{order}");
    assert_history_in_order(&order, &["CONFIRMED", "SHIPPED", "DELIVERED"]);
    let history = history_statuses(&order);
    for bad in ["PAYMENT_FAILED", "CANCELLED", "EXPIRED", "REFUNDED"] {
        assert!(
            !history.iter().any(|h| h == bad),
            "{method}: delivered order must not have {bad} in history: {history:?}"
        );
    }

    let shipment_id = order["shipment_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{method}: delivered order needs a shipment_id: {order}"))
        .to_string();
    let shipment = user
        .get(&format!("/api/v1/shipments/{shipment_id}"))
        .await
        .expect_status(200, "get shipment")
        .body;
    assert_eq!(shipment["shipment_id"], shipment_id.as_str(), "{shipment}");
    assert_eq!(shipment["order_id"], order_id.as_str(), "{shipment}");
    assert_eq!(shipment["status"], "DELIVERED", "{shipment}");
    let events: Vec<&str> = shipment["events"]
        .as_array()
        .unwrap_or_else(|| panic!("shipment lacks events: {shipment}"))
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    let legs = ["PICKED_UP", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"];
    let mut from = 0;
    for leg in legs {
        match events[from..].iter().position(|e| *e == leg) {
            Some(i) => from += i + 1,
            None => panic!("shipment events must contain {legs:?} in order, got {events:?}"),
        }
    }

    let kinds = wait_for_notifications(
        user,
        &order_id,
        &[
            "ORDER_PLACED",
            "ORDER_CONFIRMED",
            "ORDER_SHIPPED",
            "ORDER_DELIVERED",
        ],
    )
    .await;
    for bad in ["PAYMENT_FAILED", "ORDER_CANCELLED", "REFUND_ISSUED"] {
        assert!(
            !kinds.iter().any(|k| k == bad),
            "{method}: delivered order got a {bad} notification: {kinds:?}"
        );
    }

    let inv = admin.inventory(&sku).await;
    assert_eq!(
        inv,
        Inventory {
            on_hand: stock - qty,
            reserved: 0,
            available: stock - qty,
            sold: qty
        },
        "{method}: stock after delivery"
    );

    wait_for_cart_without(user, &sku).await;
    wait_for_product_available(user, &sku, stock - qty).await;
    let listed = user.orders().await;
    assert!(
        listed.iter().any(|o| o["order_id"] == order_id.as_str()),
        "GET /orders must list {order_id}: {listed:?}"
    );

    // Cancelling after shipping is refused and changes nothing.
    let r = user
        .post(&format!("/api/v1/orders/{order_id}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 409, "cancel of a delivered order: {}", r.text);
    r.assert_problem("cancel of a delivered order");
    assert_eq!(status_of(&user.order(&order_id).await), "DELIVERED");
    assert_eq!(admin.inventory(&sku).await.sold, qty);

    (order_id, sku)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_paid_by_card_upi_and_wallet_are_delivered() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let (card_user, _) = shop.new_user().await;
    let (upi_user, _) = shop.new_user().await;
    let (wallet_user, _) = shop.new_user().await;
    let (other_user, _) = shop.new_user().await;

    let card_flow =
        async { delivered_flow(&admin, &card_user, card(CARD_OK), "card", 12_345, 2).await };
    let upi_flow =
        async { delivered_flow(&admin, &upi_user, upi("success@upi"), "upi", 999, 3).await };
    let wallet_flow = async {
        // 2 x 150000 = 300000 of the 500000 balance.
        let (first, sku) =
            delivered_flow(&admin, &wallet_user, wallet(), "wallet", 150_000, 2).await;
        // Another 300000 exceeds the remaining 200000: it must not be paid.
        wallet_user.add_to_cart(&sku, 2).await;
        let key = unique_key();
        let r = wallet_user
            .checkout(Some(&key), &checkout_body(wallet()))
            .await;
        if r.status == 201 {
            let id = r.str_field("order_id");
            let o = wait_for_order(&wallet_user, &id, &["CANCELLED"]).await;
            assert!(
                history_statuses(&o).iter().any(|h| h == "PAYMENT_FAILED"),
                "wallet overdraft: history must contain PAYMENT_FAILED: {o}"
            );
            assert_ne!(o["payment"]["status"], "succeeded", "{o}");
        } else {
            assert!(
                (400..500).contains(&r.status),
                "wallet overdraft checkout: expected 201 then CANCELLED, or a 4xx; got {} {}",
                r.status,
                r.text
            );
            r.assert_problem("wallet overdraft");
        }
        let inv = wait_for_inventory(&admin, &sku, "overdraft released", |i| {
            i.reserved == 0 && i.available == 8
        })
        .await;
        assert_eq!(inv.sold, 2, "overdraft must not sell anything: {inv:?}");

        // 1 x 150000 fits the remaining balance: the wallet still works.
        let r = wallet_user
            .delete(&format!("/api/v1/cart/items/{sku}"))
            .await;
        assert!(
            r.status == 200 || r.status == 404,
            "remove cart line: {} {}",
            r.status,
            r.text
        );
        let cart = wallet_user.cart().await;
        assert_eq!(cart_quantity(&cart, &sku), 0, "cart after DELETE: {cart}");
        wallet_user.add_to_cart(&sku, 1).await;
        let third = wallet_user.place_order(wallet()).await;
        let o = wait_for_order(&wallet_user, &third, &["DELIVERED"]).await;
        assert_eq!(o["payment"]["status"], "succeeded", "{o}");
        let inv = admin.inventory(&sku).await;
        assert_eq!(
            (inv.sold, inv.available, inv.reserved),
            (3, 7, 0),
            "{inv:?}"
        );
        first
    };
    let ((card_order, _), (upi_order, _), _) = tokio::join!(card_flow, upi_flow, wallet_flow);

    // The emails went to the default file sink, and the operator's counter says so.
    let ops = server.admin_port_client();
    let emails = "agora_notifications_sent_total{channel=\"email\"}";
    wait_for_counter(&ops, emails, 4.0, "emails written are counted").await;

    // Privacy: another user can neither see nor cancel my order.
    let r = other_user
        .get(&format!("/api/v1/orders/{card_order}"))
        .await;
    assert_eq!(
        r.status, 404,
        "another user's order must be 404: {}",
        r.text
    );
    r.assert_problem("another user's order");
    let r = other_user
        .post(&format!("/api/v1/orders/{upi_order}/cancel"), &json!({}))
        .await;
    assert!(
        r.status == 404 || r.status == 403,
        "cancelling another user's order must be refused with 404/403, got {} {}",
        r.status,
        r.text
    );
    assert_eq!(status_of(&upi_user.order(&upi_order).await), "DELIVERED");
    let theirs = other_user.orders().await;
    assert!(
        theirs.is_empty(),
        "a user without orders must see an empty list: {theirs:?}"
    );
    let shipment_id = card_user.order(&card_order).await["shipment_id"]
        .as_str()
        .expect("shipment id")
        .to_string();
    let r = other_user
        .get(&format!("/api/v1/shipments/{shipment_id}"))
        .await;
    assert!(
        r.status == 404 || r.status == 403,
        "another user's shipment must be hidden (404/403), got {} {}",
        r.status,
        r.text
    );
    let notes = other_user.notifications().await;
    assert!(
        notes.is_empty(),
        "another user's notifications leaked: {notes:?}"
    );
    let r = card_user
        .get(&format!("/api/v1/orders/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(r.status, 404, "unknown order id: {}", r.text);
    r.assert_problem("unknown order");
}

/// Places an order of `qty` x a fresh product with `payment`, expects it to end CANCELLED
/// after a payment failure and its stock to be released.
async fn failed_payment_flow(admin: &Client, user: &Client, payment: Value, label: &str) {
    let stock = 7;
    let qty = 2;
    let sku = admin.stocked_product(5_000, stock).await;
    user.add_to_cart(&sku, qty).await;
    let order_id = user.place_order(payment).await;
    let order = wait_for_order(user, &order_id, &["CANCELLED"]).await;
    assert!(
        history_statuses(&order)
            .iter()
            .any(|h| h == "PAYMENT_FAILED"),
        "{label}: history must contain PAYMENT_FAILED: {order}"
    );
    assert_eq!(
        order["payment"]["status"], "failed",
        "{label}: payment status: {order}"
    );
    for bad in ["CONFIRMED", "SHIPPED", "DELIVERED"] {
        assert!(
            !history_statuses(&order).iter().any(|h| h == bad),
            "{label}: failed payment must never reach {bad}: {order}"
        );
    }
    let inv = wait_for_inventory(admin, &sku, "stock released", |i| {
        i.available == stock && i.reserved == 0
    })
    .await;
    assert_eq!(inv.sold, 0, "{label}: {inv:?}");
    assert_eq!(inv.on_hand, stock, "{label}: {inv:?}");
    let kinds = wait_for_notifications(user, &order_id, &["ORDER_PLACED"]).await;
    for bad in ["ORDER_CONFIRMED", "ORDER_SHIPPED", "ORDER_DELIVERED"] {
        assert!(
            !kinds.iter().any(|k| k == bad),
            "{label}: failed order got {bad} notification: {kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_payments_cancel_the_order_and_release_stock() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let (u1, _) = shop.new_user().await;
    let (u2, _) = shop.new_user().await;
    let (u3, _) = shop.new_user().await;
    tokio::join!(
        failed_payment_flow(&admin, &u1, card(CARD_DECLINED), "declined card"),
        failed_payment_flow(
            &admin,
            &u2,
            card(CARD_INSUFFICIENT),
            "insufficient-funds card"
        ),
        failed_payment_flow(&admin, &u3, upi("failure@upi"), "failure@upi"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_reservation_expires_and_releases_stock() {
    let ttl_ms = 1_500;
    let server = AgoraProcess::start(
        ServerOptions::fast()
            .reservation_ttl_ms(ttl_ms)
            .payment_timeout_ms(600_000),
    );
    let shop = server.client();
    let admin = server.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(2_500, 5).await;
    user.add_to_cart(&sku, 3).await;

    let started = Instant::now();
    let order_id = user.place_order(card(CARD_NEVER_ANSWERS)).await;
    let inv = admin.inventory(&sku).await;
    assert_eq!(
        (inv.available, inv.reserved, inv.sold),
        (2, 3, 0),
        "3 units must be reserved while payment is pending: {inv:?}"
    );

    let order = wait_for_order(&user, &order_id, &["EXPIRED"]).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(ttl_ms - 300),
        "order expired after {elapsed:?}, before the {ttl_ms} ms reservation TTL"
    );
    assert!(
        history_statuses(&order).iter().any(|h| h == "EXPIRED"),
        "{order}"
    );
    assert_ne!(order["payment"]["status"], "succeeded", "{order}");
    let inv = wait_for_inventory(&admin, &sku, "expired reservation released", |i| {
        i.available == 5 && i.reserved == 0
    })
    .await;
    assert_eq!(inv.sold, 0, "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_timeout_cancels_the_order() {
    let timeout_ms = 1_000;
    let server = AgoraProcess::start(
        ServerOptions::fast()
            .payment_timeout_ms(timeout_ms)
            .reservation_ttl_ms(600_000),
    );
    let shop = server.client();
    let admin = server.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(4_200, 4).await;
    user.add_to_cart(&sku, 1).await;

    let started = Instant::now();
    let order_id = user.place_order(card(CARD_NEVER_ANSWERS)).await;
    let order = wait_for_order(&user, &order_id, &["CANCELLED"]).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(timeout_ms - 300),
        "payment timed out after {elapsed:?}, before the {timeout_ms} ms payment timeout"
    );
    assert_eq!(
        order["cancel_reason"], "payment_timeout",
        "cancel_reason: {order}"
    );
    assert_ne!(order["payment"]["status"], "succeeded", "{order}");
    let inv = wait_for_inventory(&admin, &sku, "timed-out reservation released", |i| {
        i.available == 4 && i.reserved == 0
    })
    .await;
    assert_eq!(inv.sold, 0, "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_before_and_after_payment() {
    // Long courier legs: a confirmed order stays unshipped for a minute.
    let server = AgoraProcess::start(ServerOptions::default().courier_leg_ms(60_000));
    let shop = server.client();
    let admin = server.admin().await;
    let (payer, _) = shop.new_user().await;
    let (waiter, _) = shop.new_user().await;

    let refund = async {
        let stock = 6;
        let sku = admin.stocked_product(7_700, stock).await;
        payer.add_to_cart(&sku, 2).await;
        let order_id = payer.place_order(card(CARD_OK)).await;
        let confirmed = wait_for_order(&payer, &order_id, &["CONFIRMED"]).await;
        assert_eq!(confirmed["payment"]["status"], "succeeded", "{confirmed}");
        let inv = admin.inventory(&sku).await;
        assert_eq!(inv.available, stock - 2, "after confirmation: {inv:?}");
        assert_eq!(inv.reserved + inv.sold, 2, "after confirmation: {inv:?}");

        let r = payer
            .post(&format!("/api/v1/orders/{order_id}/cancel"), &json!({}))
            .await
            .expect_status(200, "cancel a confirmed order");
        assert_eq!(r.body["order_id"], order_id.as_str(), "{}", r.text);
        assert!(
            ["REFUND_PENDING", "REFUNDED"].contains(&status_of(&r.body)),
            "cancel of a confirmed order must answer REFUND_PENDING or REFUNDED: {}",
            r.text
        );
        let order = wait_for_order(&payer, &order_id, &["REFUNDED"]).await;
        assert_history_in_order(&order, &["CONFIRMED", "REFUND_PENDING", "REFUNDED"]);
        assert_eq!(order["payment"]["status"], "refunded", "{order}");
        assert!(
            !history_statuses(&order).iter().any(|h| h == "SHIPPED"),
            "{order}"
        );
        let inv = wait_for_inventory(&admin, &sku, "refunded stock back", |i| {
            i.sold == 0 && i.reserved == 0 && i.available == stock
        })
        .await;
        assert_eq!(inv.on_hand, stock, "{inv:?}");
        wait_for_notifications(&payer, &order_id, &["REFUND_ISSUED"]).await;
    };

    let unpaid = async {
        let stock = 4;
        let sku = admin.stocked_product(3_300, stock).await;
        waiter.add_to_cart(&sku, 1).await;
        let order_id = waiter.place_order(card(CARD_NEVER_ANSWERS)).await;
        let r = waiter
            .post(&format!("/api/v1/orders/{order_id}/cancel"), &json!({}))
            .await
            .expect_status(200, "cancel an unpaid order");
        assert_eq!(r.body["order_id"], order_id.as_str(), "{}", r.text);
        let order = wait_for_order(&waiter, &order_id, &["CANCELLED"]).await;
        assert_ne!(order["payment"]["status"], "succeeded", "{order}");
        wait_for_inventory(&admin, &sku, "cancelled reservation released", |i| {
            i.available == stock && i.reserved == 0 && i.sold == 0
        })
        .await;
        wait_for_notifications(&waiter, &order_id, &["ORDER_CANCELLED"]).await;
    };

    tokio::join!(refund, unpaid);
}

fn order_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|o| o["order_id"].as_str().expect("order_id").to_string())
        .collect()
}

/// A shopper's whole order history lists, however long: 250 orders (more than the 100 the
/// account keeps itself, so older ones are sealed into page entities) come back exactly once each,
/// newest first, walked by cursor at any page size, and so do their notifications. A bad
/// cursor or limit is a problem, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_order_history_lists_every_order_once_by_cursor() {
    const ORDERS: usize = 250;
    const OPS_TOKEN: &str = "order-history-test-admin-token-0123";
    let mut opts = ServerOptions::default();
    opts.env
        .push(("AGORA_ADMIN_TOKEN".into(), OPS_TOKEN.into()));
    let server = AgoraProcess::start(opts);
    let shop = server.client();
    let admin = server.admin().await;
    let (user, _) = shop.new_user().await;
    let sku = admin.stocked_product(100, ORDERS as u64).await;
    let mut placed = Vec::with_capacity(ORDERS);
    for i in 0..ORDERS {
        user.add_to_cart(&sku, 1).await;
        let id = user.place_order(wallet()).await;
        // The account learns of an order through the outbox: wait until it lists it first,
        // so the history's order is the order of placement.
        poll_until(
            &format!("order #{i} listed first"),
            POLL_TIMEOUT,
            || async {
                let r = user.get("/api/v1/orders?limit=1").await;
                match r.body["items"][0]["order_id"].as_str() {
                    Some(first) if first == id => Ok(()),
                    _ => Err(format!("{} {}", r.status, r.text)),
                }
            },
        )
        .await;
        placed.push(id);
    }
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();
    for limit in [7, 100] {
        let listed = order_ids(&user.walk("/api/v1/orders", limit).await);
        assert_eq!(listed.len(), ORDERS, "limit={limit}: every order, once");
        assert_eq!(listed, newest_first, "limit={limit}: newest first");
    }
    // The account keeps the newest 100 orders; the older ones are in sealed pages of 50.
    let me = user.get("/api/v1/me").await.expect_status(200, "me");
    let user_id = me.str_field("user_id");
    let ops = server.admin_port_client().with_token(OPS_TOKEN);
    let path = format!("/admin/entities/account/{user_id}");
    let account = ops.get(&path).await.expect_status(200, "the account");
    let orders = &account.body["state"]["Account"]["orders"];
    assert_eq!(orders["sealed_pages"], 3, "{}", account.text);
    assert_eq!(
        orders["newest"].as_array().map(Vec::len),
        Some(ORDERS - 150)
    );
    let path = format!("/admin/entities/history_page/orders:{user_id}:0");
    let page = ops.get(&path).await.expect_status(200, "page 0");
    let sealed = &page.body["state"]["HistoryPage"]["entries"]["Orders"];
    assert_eq!(sealed, &json!(placed[..50]), "{}", page.text);

    let r = user
        .get("/api/v1/orders")
        .await
        .expect_status(200, "default page");
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(20));
    assert!(r.body["next_cursor"].is_string(), "{}", r.text);

    // Every order's ORDER_PLACED notification, each notification once.
    let notes = poll_until("every ORDER_PLACED notification", POLL_TIMEOUT, || async {
        let notes = user.walk("/api/v1/notifications", 100).await;
        let placed_notes = notes.iter().filter(|n| n["kind"] == "ORDER_PLACED").count();
        if placed_notes == ORDERS {
            Ok(notes)
        } else {
            Err(format!("{placed_notes} of {ORDERS} ORDER_PLACED"))
        }
    })
    .await;
    let keys: Vec<String> = notes
        .iter()
        .map(|n| format!("{}/{}/{}", n["order_id"], n["kind"], n["channel"]))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "a notification listed twice");

    let notes_cursor = user
        .get("/api/v1/notifications?limit=1")
        .await
        .expect_status(200, "one notification")
        .body["next_cursor"]
        .as_str()
        .expect("more notifications")
        .to_string();
    for (query, status) in [
        ("cursor=zz".to_string(), 400),
        ("cursor=".to_string(), 400),
        (format!("cursor={notes_cursor}"), 400),
        ("cursor=016f".to_string(), 400),
        ("limit=abc".to_string(), 400),
        ("limit=0".to_string(), 422),
        ("limit=101".to_string(), 422),
    ] {
        let r = user.get(&format!("/api/v1/orders?{query}")).await;
        assert_eq!(r.status, status, "GET /api/v1/orders?{query}: {}", r.text);
        r.assert_problem(&format!("GET /api/v1/orders?{query}"));
    }
}
