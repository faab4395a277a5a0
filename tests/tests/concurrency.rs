//! Contention: many buyers race for a few units; stock must never be oversold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora_tests::*;
use tokio::sync::Barrier;

const BUYERS: usize = 50;
const STOCK: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_buyers_race_for_five_units() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(2_000, STOCK).await;

    let mut setup = tokio::task::JoinSet::new();
    for _ in 0..BUYERS {
        let shop = shop.clone();
        let sku = sku.clone();
        setup.spawn(async move {
            let (user, _) = shop.new_user().await;
            let cart = user.add_to_cart(&sku, 1).await;
            assert_eq!(cart_quantity(&cart, &sku), 1, "cart: {cart}");
            user
        });
    }
    let users: Vec<Client> = setup.join_all().await;
    assert_eq!(admin.inventory(&sku).await.available, STOCK);

    // Sample the inventory during the whole race and the saga afterwards.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let admin = admin.clone();
        let sku = sku.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = 0usize;
            let mut violations = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let inv = admin.inventory(&sku).await;
                samples += 1;
                if inv.accounted() != STOCK
                    || inv.available > STOCK
                    || inv.sold > STOCK
                    || inv.reserved > STOCK
                {
                    violations.push(inv);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (samples, violations)
        })
    };

    let barrier = Arc::new(Barrier::new(BUYERS));
    let mut race = tokio::task::JoinSet::new();
    for (i, user) in users.iter().cloned().enumerate() {
        let barrier = barrier.clone();
        race.spawn(async move {
            let body = checkout_body(card(CARD_OK));
            let key = unique_key();
            let request = user.checkout_request(Some(&key), &body);
            barrier.wait().await;
            let r = user.send(request).await;
            (i, r)
        });
    }
    let mut results = race.join_all().await;
    results.sort_by_key(|(i, _)| *i);

    let mut winners = Vec::new();
    let mut losers = Vec::new();
    let mut unexpected = Vec::new();
    for (i, r) in &results {
        match r.status {
            201 => winners.push((*i, r.str_field("order_id"))),
            409 => {
                r.assert_problem("out-of-stock checkout");
                let ty = r.body["type"].as_str().unwrap_or("");
                assert!(
                    ty.ends_with("/out-of-stock"),
                    "409 problem type must end with /out-of-stock: {}",
                    r.text
                );
                let id = r.body["order_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("out-of-stock problem lacks order_id: {}", r.text));
                losers.push((*i, id.to_string()));
            }
            _ => unexpected.push(format!("buyer {i}: HTTP {} {}", r.status, r.text)),
        }
    }
    assert!(
        unexpected.is_empty(),
        "checkouts must answer 201 or 409: {unexpected:#?}"
    );
    assert_eq!(
        (winners.len(), losers.len()),
        (STOCK as usize, BUYERS - STOCK as usize),
        "exactly {STOCK} of {BUYERS} checkouts must win; statuses {:?}",
        histogram(results.iter().map(|(_, r)| r.status.to_string()))
    );

    for (i, id) in &winners {
        let o = wait_for_order(&users[*i], id, &["DELIVERED"]).await;
        assert_eq!(o["payment"]["status"], "succeeded", "{o}");
    }
    for (i, id) in &losers {
        assert!(
            !winners.iter().any(|(_, w)| w == id),
            "out-of-stock order id {id} is also a winner's"
        );
        let o = wait_for_order(&users[*i], id, &["CANCELLED", "EXPIRED"]).await;
        assert_ne!(o["payment"]["status"], "succeeded", "{o}");
        let history = history_statuses(&o);
        for bad in ["CONFIRMED", "SHIPPED", "DELIVERED", "STOCK_RESERVED"] {
            assert!(
                !history.iter().any(|h| h == bad),
                "out-of-stock order must never reach {bad}: {o}"
            );
        }
    }

    let inv = wait_for_inventory(&admin, &sku, "all five sold", |i| {
        i.sold == STOCK && i.reserved == 0
    })
    .await;
    assert_eq!(inv.available, 0, "{inv:?}");
    assert_eq!(inv.on_hand, 0, "{inv:?}");
    wait_for_product_available(&shop, &sku, 0).await;

    stop.store(true, Ordering::SeqCst);
    let (samples, violations) = sampler.await.expect("sampler panicked");
    assert!(samples > 0, "the inventory sampler took no sample");
    assert!(
        violations.is_empty(),
        "inventory broke available + reserved + sold == {STOCK} (or exceeded it) in {} of {samples} samples: {violations:?}",
        violations.len()
    );
}
