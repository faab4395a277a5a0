//! Crash durability: SIGKILL the server in the middle of a stream of checkouts,
//! restart it on the same data dir and check that nothing acknowledged was lost,
//! nothing was duplicated and stock is conserved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_tests::*;

const STOCK: u64 = 200;
const USERS: usize = 8;
const KILL_AFTER_ACKS: usize = 60;

/// What one shopper task observed before the crash.
#[derive(Default)]
struct ShopperLog {
    /// Order ids of checkouts answered 201.
    acked: Vec<String>,
    /// Idempotency key of a checkout sent but never answered (cut by the kill).
    unanswered_checkout: Option<String>,
    /// True if an add-to-cart was sent but never answered.
    unanswered_add: bool,
    /// Failures that happened while the server was supposed to be healthy.
    failures: Vec<String>,
}

async fn shopper(
    user: Client,
    sku: String,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    killing: Arc<AtomicBool>,
) -> ShopperLog {
    let mut log = ShopperLog::default();
    let body = checkout_body(card(CARD_OK));
    'outer: while !stop.load(Ordering::SeqCst) {
        let add = user
            .req(Method::POST, "/api/v1/cart/items")
            .json(&json!({"sku": sku, "quantity": 1}));
        match user.try_send(add).await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                if !killing.load(Ordering::SeqCst) {
                    log.failures
                        .push(format!("add to cart: HTTP {} {}", r.status, r.text));
                }
                break;
            }
            Err(e) => {
                if !killing.load(Ordering::SeqCst) {
                    log.failures
                        .push(format!("add to cart transport error: {e}"));
                }
                log.unanswered_add = true;
                break;
            }
        }

        let key = unique_key();
        match user
            .try_send(user.checkout_request(Some(&key), &body))
            .await
        {
            Ok(r) if r.status == 201 => {
                let id = r.body["order_id"].as_str().map(String::from);
                match id {
                    Some(id) => {
                        log.acked.push(id);
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    None => {
                        log.failures
                            .push(format!("201 without order_id: {}", r.text));
                        break;
                    }
                }
            }
            Ok(r) => {
                if !killing.load(Ordering::SeqCst) {
                    log.failures
                        .push(format!("checkout: HTTP {} {}", r.status, r.text));
                }
                break;
            }
            Err(e) => {
                if !killing.load(Ordering::SeqCst) {
                    log.failures.push(format!("checkout transport error: {e}"));
                }
                log.unanswered_checkout = Some(key);
                break;
            }
        }

        // The purchased line leaves the cart eventually; wait for it before adding again
        // so that every order is exactly one unit.
        let deadline = Instant::now() + POLL_TIMEOUT;
        loop {
            if stop.load(Ordering::SeqCst) {
                break 'outer;
            }
            match user.try_send(user.req(Method::GET, "/api/v1/cart")).await {
                Ok(r) if r.status == 200 => {
                    if cart_quantity(&r.body, &sku) == 0 {
                        break;
                    }
                    if Instant::now() > deadline {
                        log.failures.push(format!(
                            "cart still holds {sku} {POLL_TIMEOUT:?} after checkout: {}",
                            r.text
                        ));
                        break 'outer;
                    }
                }
                Ok(r) => {
                    if !killing.load(Ordering::SeqCst) {
                        log.failures
                            .push(format!("get cart: HTTP {} {}", r.status, r.text));
                    }
                    break 'outer;
                }
                Err(e) => {
                    if !killing.load(Ordering::SeqCst) {
                        log.failures.push(format!("get cart transport error: {e}"));
                    }
                    break 'outer;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_orders_survive_kill_9() {
    let mut server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(1_000, STOCK).await;
    let mut users = Vec::new();
    let mut emails = Vec::new();
    for _ in 0..USERS {
        let (u, e) = shop.new_user().await;
        users.push(u);
        emails.push(e);
    }

    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let killing = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = users
        .iter()
        .map(|u| {
            tokio::spawn(shopper(
                u.clone(),
                sku.clone(),
                acks.clone(),
                stop.clone(),
                killing.clone(),
            ))
        })
        .collect();

    // Wait (by count, not time) for enough acknowledged orders, then SIGKILL mid-stream.
    let deadline = Instant::now() + Duration::from_secs(90);
    while acks.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} orders acknowledged after 90 s",
            acks.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killing.store(true, Ordering::SeqCst);
    server.kill9();
    stop.store(true, Ordering::SeqCst);

    let mut logs = Vec::new();
    for t in tasks {
        let log = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("shopper task did not stop within 60 s after the kill")
            .expect("shopper task panicked");
        logs.push(log);
    }
    let failures: Vec<&String> = logs.iter().flat_map(|l| &l.failures).collect();
    assert!(
        failures.is_empty(),
        "requests failed while the server was healthy (before the kill): {failures:#?}"
    );
    let acked_total: usize = logs.iter().map(|l| l.acked.len()).sum();
    assert!(
        acked_total >= KILL_AFTER_ACKS,
        "shoppers stopped before {KILL_AFTER_ACKS} acknowledged orders ({acked_total})"
    );
    let in_flight = logs
        .iter()
        .filter(|l| l.unanswered_checkout.is_some() || l.unanswered_add)
        .count();
    eprintln!(
        "killed agora after {acked_total} acknowledged orders; {in_flight} requests cut in flight"
    );

    // Restart on the same data dir; new ports, old tokens.
    server.restart();
    let base = server.shop_url.clone();
    let admin = admin.rebased(&base);
    let users: Vec<Client> = users.iter().map(|u| u.rebased(&base)).collect();

    let r = admin.get(&format!("/api/v1/inventory/{sku}")).await;
    assert_eq!(
        r.status, 200,
        "admin token issued before the restart must still work: {}",
        r.text
    );
    let inv = Inventory::from_json(&r.body);
    assert_eq!(
        inv.accounted(),
        STOCK,
        "stock not conserved right after restart: {inv:?}"
    );
    shop.rebased(&base)
        .get(&format!("/api/v1/products/{sku}"))
        .await
        .expect_status(200, "product created before the crash");

    // From here on, collect every problem so one run shows the whole picture.
    let mut problems: Vec<String> = Vec::new();

    // Every acknowledged order must have survived.
    let mut lost = Vec::new();
    for (user, log) in users.iter().zip(&logs) {
        for id in &log.acked {
            let r = user.get(&format!("/api/v1/orders/{id}")).await;
            if r.status != 200 {
                lost.push(format!("{id}: HTTP {} {}", r.status, r.text));
            }
        }
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} of {acked_total} acknowledged orders are gone after kill -9: {lost:#?}",
            lost.len()
        ));
    }

    // Checkouts cut by the crash are retried with the same key: exactly-once.
    let body = checkout_body(card(CARD_OK));
    let mut expected: Vec<BTreeSet<String>> = Vec::new();
    for (i, (user, log)) in users.iter().zip(&logs).enumerate() {
        let mut ids: BTreeSet<String> = log.acked.iter().cloned().collect();
        assert_eq!(
            ids.len(),
            log.acked.len(),
            "duplicate order ids acknowledged"
        );
        if let Some(key) = &log.unanswered_checkout {
            let r = user.checkout(Some(key), &body).await;
            if r.status != 201 {
                problems.push(format!(
                    "user #{i}: retrying a checkout cut by the crash (same key, same body) must answer 201, got {} {}",
                    r.status, r.text
                ));
            } else {
                let id = r.str_field("order_id");
                if ids.contains(&id) {
                    problems.push(format!(
                        "user #{i}: retried key returned an already acknowledged order {id}"
                    ));
                }
                ids.insert(id);
            }
        }
        expected.push(ids);
    }

    // Everything reaches DELIVERED; inventory stays conserved meanwhile.
    let total_orders: usize = expected.iter().map(BTreeSet::len).sum();
    let mut final_state: BTreeMap<String, Value> = BTreeMap::new();
    let mut last_seen: BTreeMap<String, Value> = BTreeMap::new();
    let mut conservation_broken = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (user, ids) in users.iter().zip(&expected) {
            for id in ids {
                if final_state.contains_key(id) {
                    continue;
                }
                let r = user.get(&format!("/api/v1/orders/{id}")).await;
                if r.status != 200 {
                    last_seen.insert(id.clone(), json!({"http": r.status, "body": r.text}));
                    continue;
                }
                if TERMINAL_ORDER_STATUSES.contains(&status_of(&r.body)) {
                    final_state.insert(id.clone(), r.body);
                } else {
                    last_seen.insert(id.clone(), r.body);
                }
            }
        }
        let inv = admin.inventory(&sku).await;
        if inv.accounted() != STOCK && conservation_broken.is_none() {
            conservation_broken = Some(inv);
        }
        if final_state.len() == total_orders || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    if let Some(inv) = conservation_broken {
        problems.push(format!(
            "stock not conserved after restart (available + reserved + sold != {STOCK}): {inv:?}"
        ));
    }
    let not_delivered: Vec<(&String, &Value)> = expected
        .iter()
        .flatten()
        .filter_map(|id| match final_state.get(id) {
            Some(o) if status_of(o) == "DELIVERED" => None,
            Some(o) => Some((id, o)),
            None => Some((id, last_seen.get(id).unwrap_or(&Value::Null))),
        })
        .collect();
    if !not_delivered.is_empty() {
        let statuses = histogram(not_delivered.iter().map(|(_, o)| status_of(o).to_string()));
        let examples: Vec<String> = not_delivered
            .iter()
            .take(5)
            .map(|(id, o)| format!("{id}: {o}"))
            .collect();
        problems.push(format!(
            "{} of {total_orders} orders (acknowledged + retried) did not reach DELIVERED within 60 s after the restart; their statuses: {statuses:?}; examples:\n{}",
            not_delivered.len(),
            examples.join("\n")
        ));
    }
    let mut delivered = 0u64;
    for o in final_state.values() {
        if status_of(o) != "DELIVERED" {
            continue;
        }
        let qty: u64 = o["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["quantity"].as_u64().expect("quantity"))
            .sum();
        if qty != 1 {
            problems.push(format!("every order was for exactly one unit: {o}"));
        }
        delivered += qty;
    }

    // No phantom or duplicate orders: each user's list is exactly what we expect.
    for (i, (user, ids)) in users.iter().zip(&expected).enumerate() {
        let listed: BTreeSet<String> = user
            .orders()
            .await
            .iter()
            .map(|o| o["order_id"].as_str().expect("order_id").to_string())
            .collect();
        if &listed != ids {
            problems.push(format!(
                "user #{i}: GET /orders after restart differs from the acknowledged (+ retried) orders: unexpected {:?}, missing {:?}",
                listed.difference(ids).collect::<Vec<_>>(),
                ids.difference(&listed).collect::<Vec<_>>()
            ));
        }
        let cart = user.cart().await;
        let max_left = u64::from(logs[i].unanswered_add);
        if cart_quantity(&cart, &sku) > max_left {
            problems.push(format!(
                "user #{i}: cart still holds the item after all checkouts resolved: {cart}"
            ));
        }
    }

    let inv = if not_delivered.is_empty() {
        wait_for_inventory(&admin, &sku, "no reservations left", |i| i.reserved == 0).await
    } else {
        admin.inventory(&sku).await
    };
    if inv.accounted() != STOCK || inv.reserved != 0 || inv.sold != delivered {
        problems.push(format!(
            "final stock must be conserved ({STOCK}), with nothing reserved and sold == {delivered} delivered units: {inv:?}"
        ));
    }

    // Credentials are durable too.
    let r = shop.rebased(&base).login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    if r.status != 200 {
        problems.push(format!(
            "admin login after restart: {} {}",
            r.status, r.text
        ));
    }
    let r = shop.rebased(&base).login(&emails[0], USER_PASSWORD).await;
    if r.status != 200 {
        problems.push(format!("user login after restart: {} {}", r.status, r.text));
    }

    assert!(
        problems.is_empty(),
        "kill -9 durability problems ({acked_total} orders acknowledged before the crash, {in_flight} requests cut):\n- {}",
        problems.join("\n- ")
    );
}

/// Places a never-answered card payment, SIGKILLs the server, restarts it and
/// returns (server, user, admin, order id, sku) with clients pointing at the new process.
async fn order_pending_at_crash(
    opts: ServerOptions,
) -> (AgoraProcess, Client, Client, String, String) {
    let mut server = AgoraProcess::start(opts);
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(900, 3).await;
    let (user, _) = shop.new_user().await;
    user.add_to_cart(&sku, 1).await;
    let order_id = user.place_order(card(CARD_NEVER_ANSWERS)).await;
    let status = status_of(&user.order(&order_id).await).to_string();
    assert!(
        !TERMINAL_ORDER_STATUSES.contains(&status.as_str()),
        "order must still be pending before the crash, is {status}"
    );
    server.kill9();
    server.restart();
    let base = server.shop_url.clone();
    (
        server,
        user.rebased(&base),
        admin.rebased(&base),
        order_id,
        sku,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_timers_still_fire_after_kill_9() {
    let timeout = async {
        let (_server, user, admin, id, sku) = order_pending_at_crash(
            ServerOptions::fast()
                .payment_timeout_ms(2_000)
                .reservation_ttl_ms(600_000),
        )
        .await;
        let o = wait_for_order(&user, &id, &["CANCELLED"]).await;
        assert_eq!(o["cancel_reason"], "payment_timeout", "{o}");
        wait_for_inventory(&admin, &sku, "released after payment timeout", |i| {
            i.available == 3 && i.reserved == 0 && i.sold == 0
        })
        .await;
    };
    let expiry = async {
        let (_server, user, admin, id, sku) = order_pending_at_crash(
            ServerOptions::fast()
                .reservation_ttl_ms(2_000)
                .payment_timeout_ms(600_000),
        )
        .await;
        wait_for_order(&user, &id, &["EXPIRED"]).await;
        wait_for_inventory(&admin, &sku, "released after reservation expiry", |i| {
            i.available == 3 && i.reserved == 0 && i.sold == 0
        })
        .await;
    };
    tokio::join!(timeout, expiry);
}
