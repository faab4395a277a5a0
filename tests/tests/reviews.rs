//! Product reviews: only a customer with a delivered order may review (verified purchase,
//! learnt by the customer's review slot from the order through the outbox); one review per
//! customer and product, edited by a second POST or a PUT; the listing's average, count and
//! histogram; more reviews than a page walked by cursor, each write read back at once; the
//! product listing, search filter and sort following the average; an admin hiding a
//! review; bad input, unknown products and missing rights; the figures kept across a
//! SIGKILL; and (with `AGORA_OLD_BIN`) reviews written before review slots after an upgrade.

use agora_tests::*;

/// A category no other test uses.
fn category() -> String {
    format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Admin: a product in `category` with 20 units; returns its SKU.
async fn product_in(admin: &Client, category: &str) -> String {
    let sku = unique_sku();
    admin
        .post(
            "/api/v1/products",
            &json!({
                "sku": sku, "name": format!("Reviewed thing {sku}"), "category": category,
                "price": {"amount_minor": 1_000, "currency": "INR"},
            }),
        )
        .await
        .expect_status(201, "create product");
    admin.receive(&sku, 20).await;
    sku
}

/// A fresh customer who bought one `sku` and saw it DELIVERED.
async fn buyer_of(server: &AgoraProcess, sku: &str) -> Client {
    let (user, _) = server.client().new_user().await;
    user.add_to_cart(sku, 1).await;
    let order_id = user.place_order(card(CARD_OK)).await;
    wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    user
}

fn reviews_path(sku: &str) -> String {
    format!("/api/v1/products/{sku}/reviews")
}

async fn put(client: &Client, path: &str, body: &Value) -> Resp {
    client.send(client.req(Method::PUT, path).json(body)).await
}

/// Posts a review, waiting (with a deadline) while the board has not yet learnt of the
/// delivery (the order's message travels through the outbox after DELIVERED is visible).
async fn post_review(user: &Client, sku: &str, body: &Value) -> Resp {
    poll_until(
        "the review board to learn of the delivery",
        POLL_TIMEOUT,
        || async {
            let r = user.post(&reviews_path(sku), body).await;
            if r.status == 403 {
                Err(r.text)
            } else {
                Ok(r)
            }
        },
    )
    .await
}

async fn listing(client: &Client, sku: &str, query: &str) -> Value {
    client
        .get(&format!("{}?{query}", reviews_path(sku)))
        .await
        .expect_status(200, "list reviews")
        .body
}

fn histogram(counts: [u64; 5]) -> Value {
    json!({"1": counts[0], "2": counts[1], "3": counts[2], "4": counts[3], "5": counts[4]})
}

/// Polls `GET /api/v1/products/{sku}` until it shows `rating` over `count` reviews.
async fn wait_for_product_rating(shop: &Client, sku: &str, rating: f64, count: u64) -> Value {
    poll_until(
        &format!("{sku} to show rating {rating} over {count}"),
        POLL_TIMEOUT,
        || async {
            let r = shop
                .get(&format!("/api/v1/products/{sku}"))
                .await
                .expect_status(200, "get product");
            if r.body["rating"] == json!(rating) && r.body["review_count"] == json!(count) {
                Ok(r.body)
            } else {
                Err(r.text)
            }
        },
    )
    .await
}

/// Polls a listing query until its SKUs are `wanted`, in order.
async fn wait_for_listing(shop: &Client, query: &str, wanted: &[&str]) -> Value {
    poll_until(
        &format!("listing {query} = {wanted:?}"),
        POLL_TIMEOUT,
        || async {
            let r = shop
                .get(&format!("/api/v1/products?{query}"))
                .await
                .expect_status(200, "listing");
            let skus: Vec<&str> = r.body["items"]
                .as_array()
                .map(|a| a.iter().filter_map(|i| i["sku"].as_str()).collect())
                .unwrap_or_default();
            if skus == wanted {
                Ok(r.body.clone())
            } else {
                Err(r.text)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_buyers_review_once_and_the_listing_follows() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let admin = server.admin().await;
    let shop = server.client();
    let cat = category();
    let sku = product_in(&admin, &cat).await;
    let other = product_in(&admin, &cat).await;

    let alice = buyer_of(&server, &sku).await;
    let r = post_review(
        &alice,
        &sku,
        &json!({"rating": 4, "title": "Solid", "body": "Works."}),
    )
    .await;
    let r = r.expect_status(201, "first review");
    let id = r.body["id"].as_u64().expect("review id");
    assert_eq!(r.body["rating"], 4, "{}", r.text);
    assert_eq!(r.body["author_name"], "Test User", "{}", r.text);
    assert_eq!(r.body["verified_purchase"], true, "{}", r.text);
    assert!(r.body.get("hidden").is_none(), "{}", r.text);

    // A second POST edits the one review; a PUT does too.
    let r = alice
        .post(
            &reviews_path(&sku),
            &json!({"rating": 2, "title": "Broke after a week"}),
        )
        .await
        .expect_status(200, "second POST edits");
    assert_eq!(
        (r.body["id"].as_u64(), r.body["rating"].as_u64()),
        (Some(id), Some(2))
    );
    assert_eq!(r.body["body"], "", "{}", r.text);
    let r = put(
        &alice,
        &format!("{}/mine", reviews_path(&sku)),
        &json!({"rating": 5, "title": "Replaced, now perfect", "body": "Support was great."}),
    )
    .await
    .expect_status(200, "PUT edits");
    assert_eq!(r.body["id"].as_u64(), Some(id), "{}", r.text);
    assert_ne!(r.body["created_at"], r.body["updated_at"], "{}", r.text);

    // Nobody without a delivered order of this SKU may review it: not a stranger, not a
    // buyer of another product, not a customer whose order was cancelled.
    let (stranger, _) = shop.new_user().await;
    let other_buyer = buyer_of(&server, &other).await;
    let (cancelled, _) = shop.new_user().await;
    cancelled.add_to_cart(&sku, 1).await;
    let order_id = cancelled.place_order(card(CARD_DECLINED)).await;
    wait_for_order(&cancelled, &order_id, &["CANCELLED"]).await;
    for (who, client) in [
        ("stranger", &stranger),
        ("buyer of another product", &other_buyer),
        ("cancelled order", &cancelled),
    ] {
        let r = client
            .post(
                &reviews_path(&sku),
                &json!({"rating": 1, "title": "Never had it"}),
            )
            .await;
        assert_eq!(r.status, 403, "{who}: {}", r.text);
        r.assert_problem(who);
    }
    let r = admin
        .post(&reviews_path(&sku), &json!({"rating": 1, "title": "admin"}))
        .await;
    assert_eq!(r.status, 403, "an admin without an order: {}", r.text);

    // A second buyer; the listing's figures.
    let bob = buyer_of(&server, &sku).await;
    post_review(&bob, &sku, &json!({"rating": 3, "title": "Fine"}))
        .await
        .expect_status(201, "bob's review");
    let page = listing(&shop, &sku, "").await;
    assert_eq!(page["count"], 2, "{page}");
    assert_eq!(page["average"], 4.0, "{page}");
    assert_eq!(page["histogram"], histogram([0, 0, 1, 0, 1]), "{page}");
    let titles: Vec<&str> = page["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["title"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        titles,
        ["Fine", "Replaced, now perfect"],
        "newest first: {page}"
    );
    let second = listing(&shop, &sku, "page=2&per_page=1").await;
    assert_eq!(
        second["items"][0]["title"], "Replaced, now perfect",
        "{second}"
    );
    assert_eq!(
        (second["page"].as_u64(), second["per_page"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        listing(&shop, &sku, "page=3&per_page=1").await["items"],
        json!([])
    );
    // The same two by cursor, one at a time; page numbers and cursors do not mix, and a
    // cursor this list did not give is a 400.
    let path = reviews_path(&sku);
    let walked: Vec<Value> = shop.walk(&path, 1).await;
    let walked: Vec<&str> = walked.iter().filter_map(|i| i["title"].as_str()).collect();
    assert_eq!(walked, ["Fine", "Replaced, now perfect"]);
    let first = listing(&shop, &sku, "limit=1").await;
    assert!(first.get("page").is_none(), "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next_cursor")
        .to_string();
    for query in [
        format!("cursor={cursor}&page=2"),
        "cursor=zz".to_string(),
        "cursor=016f00000000000000e6".to_string(),
    ] {
        let r = shop.get(&format!("{path}?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        r.assert_problem(&query);
    }

    // The product, the search filter and the rating sort follow.
    wait_for_product_rating(&shop, &sku, 4.0, 2).await;
    let by_rating = format!("category={cat}&sort=rating");
    let page = wait_for_listing(&shop, &by_rating, &[&sku, &other]).await;
    assert_eq!(page["items"][0]["rating"], 4.0, "{page}");
    assert_eq!(page["items"][0]["review_count"], 2, "{page}");
    assert_eq!(page["items"][1]["review_count"], 0, "{page}");
    wait_for_listing(&shop, &format!("category={cat}&min_rating=4"), &[&sku]).await;
    wait_for_listing(&shop, &format!("category={cat}&min_rating=4.01"), &[]).await;

    // An admin hides Bob's review: it leaves the figures and the listing (product and search
    // too); Bob still sees it, flagged; editing it does not bring it back.
    let bob_id = bob
        .get(&format!("{}/mine", reviews_path(&sku)))
        .await
        .expect_status(200, "bob's own review")
        .body["id"]
        .as_u64()
        .expect("id");
    let hide = format!("{}/{bob_id}/hide", reviews_path(&sku));
    let r = bob.post(&hide, &json!({})).await;
    assert_eq!(r.status, 403, "a customer may not hide: {}", r.text);
    r.assert_problem("customer hides");
    let r = admin
        .post(&hide, &json!({}))
        .await
        .expect_status(200, "hide");
    assert_eq!(r.body["hidden"], true, "{}", r.text);
    let page = listing(&shop, &sku, "").await;
    assert_eq!(
        (page["count"].as_u64(), page["average"].as_f64()),
        (Some(1), Some(5.0)),
        "{page}"
    );
    assert_eq!(page["histogram"], histogram([0, 0, 0, 0, 1]), "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    let mine = bob
        .get(&format!("{}/mine", reviews_path(&sku)))
        .await
        .expect_status(200, "bob still sees his");
    assert_eq!(mine.body["hidden"], true, "{}", mine.text);
    let r = bob
        .post(
            &reviews_path(&sku),
            &json!({"rating": 1, "title": "Angry now"}),
        )
        .await
        .expect_status(200, "edit a hidden review");
    assert_eq!(r.body["hidden"], true, "{}", r.text);
    assert_eq!(listing(&shop, &sku, "").await["count"], 1);
    wait_for_product_rating(&shop, &sku, 5.0, 1).await;
    wait_for_listing(&shop, &format!("category={cat}&min_rating=4.5"), &[&sku]).await;
    // Shown again, it counts again (with its edit).
    admin
        .post(
            &format!("{}/{bob_id}/unhide", reviews_path(&sku)),
            &json!({}),
        )
        .await
        .expect_status(200, "unhide");
    let page = listing(&shop, &sku, "").await;
    assert_eq!(page["histogram"], histogram([1, 0, 0, 0, 1]), "{page}");
    assert_eq!(page["average"], 3.0, "{page}");
    wait_for_product_rating(&shop, &sku, 3.0, 2).await;
    let r = admin
        .post(&format!("{}/999/hide", reviews_path(&sku)), &json!({}))
        .await;
    assert_eq!(r.status, 404, "unknown review: {}", r.text);
    r.assert_problem("unknown review");

    // Acknowledged reviews survive a SIGKILL; the listing's figures are rebuilt at start.
    let mut server = server;
    server.restart();
    let shop = server.client();
    let page = listing(&shop, &sku, "").await;
    assert_eq!(
        (page["count"].as_u64(), page["average"].as_f64()),
        (Some(2), Some(3.0)),
        "{page}"
    );
    wait_for_product_rating(&shop, &sku, 3.0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reviews_unknown_products_and_missing_tokens_are_refused() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let admin = server.admin().await;
    let shop = server.client();
    let sku = product_in(&admin, &category()).await;
    let buyer = buyer_of(&server, &sku).await;
    // Make sure the board knows the buyer, so that what follows is refused for its input.
    post_review(&buyer, &sku, &json!({"rating": 3, "title": "ok"}))
        .await
        .expect_status(201, "valid review");

    let long_title = "t".repeat(121);
    let long_body = "b".repeat(4001);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"rating": 0, "title": "x"}), "rating"),
        (json!({"rating": 6, "title": "x"}), "rating"),
        (json!({"rating": 300, "title": "x"}), ""),
        (json!({"rating": -1, "title": "x"}), ""),
        (json!({"rating": "5", "title": "x"}), ""),
        (json!({"title": "x"}), ""),
        (json!({"rating": 5}), ""),
        (json!({"rating": 5, "title": ""}), "title"),
        (json!({"rating": 5, "title": "   "}), "title"),
        (json!({"rating": 5, "title": long_title}), "title"),
        (json!({"rating": 5, "title": "a\u{202e}b"}), "title"),
        (
            json!({"rating": 5, "title": "x", "body": long_body}),
            "body",
        ),
        (json!({"rating": 5, "title": "x", "stars": 5}), ""),
    ];
    for (body, field) in &cases {
        for (how, r) in [
            ("POST", buyer.post(&reviews_path(&sku), body).await),
            (
                "PUT",
                put(&buyer, &format!("{}/mine", reviews_path(&sku)), body).await,
            ),
        ] {
            assert_eq!(r.status, 422, "{how} {body}: {}", r.text);
            r.assert_problem(&format!("{how} {body}"));
            if !field.is_empty() {
                assert_eq!(r.body["field"], *field, "{how} {body}: {}", r.text);
            }
        }
    }
    // Nothing changed.
    let page = listing(&shop, &sku, "").await;
    assert_eq!(
        (page["count"].as_u64(), page["items"][0]["title"].as_str()),
        (Some(1), Some("ok")),
        "{page}"
    );
    // The limits themselves are fine.
    let at_limit = json!({"rating": 1, "title": "t".repeat(120), "body": "b".repeat(4000)});
    buyer
        .post(&reviews_path(&sku), &at_limit)
        .await
        .expect_status(200, "title and body at their limits");

    // Unknown products are 404 for every review route.
    let missing = unique_sku();
    let body = json!({"rating": 5, "title": "x"});
    let mine = format!("{}/mine", reviews_path(&missing));
    for (what, r) in [
        ("list", shop.get(&reviews_path(&missing)).await),
        ("post", buyer.post(&reviews_path(&missing), &body).await),
        ("put", put(&buyer, &mine, &body).await),
        ("mine", buyer.get(&mine).await),
        (
            "hide",
            admin
                .post(&format!("{}/1/hide", reviews_path(&missing)), &json!({}))
                .await,
        ),
        (
            "malformed sku",
            shop.get("/api/v1/products/bad%20sku!/reviews").await,
        ),
    ] {
        assert_eq!(r.status, 404, "{what}: {}", r.text);
        r.assert_problem(what);
    }
    // No review of one's own yet: 404.
    let (stranger, _) = shop.new_user().await;
    let r = stranger.get(&format!("{}/mine", reviews_path(&sku))).await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Writing needs a token; reading does not.
    let r = shop.post(&reviews_path(&sku), &body).await;
    assert_eq!(r.status, 401, "{}", r.text);
    r.assert_problem("no token");
    let r = put(&shop, &format!("{}/mine", reviews_path(&sku)), &body).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = shop
        .post(&format!("{}/1/hide", reviews_path(&sku)), &json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Paging parameters.
    for (query, status) in [
        ("page=0", 422),
        ("per_page=0", 422),
        ("per_page=101", 422),
        ("page=10001", 422),
        ("page=abc", 400),
    ] {
        let r = shop.get(&format!("{}?{query}", reviews_path(&sku))).await;
        assert_eq!(r.status, status, "{query}: {}", r.text);
        r.assert_problem(query);
    }
    let r = admin
        .post(&format!("{}/abc/hide", reviews_path(&sku)), &json!({}))
        .await;
    assert_eq!(r.status, 400, "malformed review id: {}", r.text);
    r.assert_problem("malformed review id");
}

/// More reviews than one page, walked by cursor: each visible review once, newest first; a
/// hidden one left out (its page comes back short while the cursor still leads on); and each
/// write read back at once by the listing and its figures (read your writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reviews_walk_by_cursor_and_each_write_reads_back_at_once() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let admin = server.admin().await;
    let shop = server.client();
    let sku = product_in(&admin, &category()).await;
    let n = 7u64;
    let mut ids = Vec::new();
    for i in 0..n {
        let buyer = buyer_of(&server, &sku).await;
        let body = json!({"rating": i % 5 + 1, "title": format!("review {i}")});
        let r = post_review(&buyer, &sku, &body).await;
        let r = r.expect_status(201, "a review");
        let id = r.body["id"].as_u64().expect("a review id");
        // Read your writes: no polling, the first page and the count include it already.
        let page = listing(&shop, &sku, "limit=1").await;
        assert_eq!(page["items"][0]["id"], id, "{page}");
        assert_eq!(page["count"], i + 1, "{page}");
        ids.push(id);
    }
    assert_eq!(
        ids,
        (1..=n).collect::<Vec<u64>>(),
        "ids in order of submission"
    );

    admin
        .post(&format!("{}/4/hide", reviews_path(&sku)), &json!({}))
        .await
        .expect_status(200, "hide review 4");
    assert_eq!(listing(&shop, &sku, "").await["count"], n - 1);

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut query = "limit=2".to_string();
    loop {
        let page = listing(&shop, &sku, &query).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        sizes.push(items.len());
        seen.extend(items.iter().filter_map(|r| r["id"].as_u64()));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [7, 6, 5, 3, 2, 1],
        "newest first, each once, 4 hidden"
    );
    assert_eq!(
        sizes,
        [2, 1, 2, 1],
        "the page holding the hidden review is short"
    );
    // Page numbers count the same windows.
    let third = listing(&shop, &sku, "page=3&per_page=2").await;
    let third: Vec<u64> = third["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(third, [3, 2]);
}

/// A customer who bought one `sku` and saw it DELIVERED, with their email.
async fn buyer_with_email(server: &AgoraProcess, sku: &str) -> (Client, String) {
    let (user, email) = server.client().new_user().await;
    user.add_to_cart(sku, 1).await;
    let order_id = user.place_order(card(CARD_OK)).await;
    wait_for_order(&user, &order_id, &["DELIVERED"]).await;
    (user, email)
}

/// The ids, titles and hidden flags of a listing, and its figures.
fn shown(page: &Value) -> Value {
    let items: Vec<Value> = page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| json!([r["id"], r["title"], r["rating"]]))
                .collect()
        })
        .unwrap_or_default();
    json!({"items": items, "count": page["count"], "average": page["average"],
        "histogram": page["histogram"]})
}

/// Reviews written by a build before review slots (every review inside the product's board)
/// read the same after an upgrade, and their authors, a buyer who had not reviewed yet and
/// an admin carry on. Needs `AGORA_OLD_BIN`, an `agora` binary built before review slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs AGORA_OLD_BIN: an agora binary built before review slots"]
async fn reviews_written_before_slots_read_the_same_after_an_upgrade() {
    let old_bin = std::env::var_os("AGORA_OLD_BIN").expect("AGORA_OLD_BIN");
    let opts = ServerOptions {
        bin: Some(old_bin.into()),
        ..ServerOptions::fast()
    };
    let mut server = AgoraProcess::start(opts);
    let admin = server.admin().await;
    let sku = product_in(&admin, &category()).await;
    let mut authors = Vec::new();
    for i in 0..3u64 {
        let (buyer, email) = buyer_with_email(&server, &sku).await;
        let body = json!({"rating": i + 3, "title": format!("old {i}")});
        post_review(&buyer, &sku, &body)
            .await
            .expect_status(201, "a review by the old build");
        authors.push(email);
    }
    let (_, waiting) = buyer_with_email(&server, &sku).await;
    admin
        .post(&format!("{}/2/hide", reviews_path(&sku)), &json!({}))
        .await
        .expect_status(200, "hide review 2 in the old build");
    let before = shown(&listing(&server.client(), &sku, "").await);
    assert_eq!(before["count"], 2, "{before}");

    server.upgrade_to(None);
    let shop = server.client();
    let after = shown(&listing(&shop, &sku, "").await);
    assert_eq!(
        after, before,
        "the same listing and figures after the upgrade"
    );
    let walked = listing(&shop, &sku, "limit=1").await;
    assert_eq!(walked["items"][0]["id"], 3, "{walked}");

    // An old author edits their review: same id; the waiting buyer reviews: the next id.
    let first = shop.login_as(&authors[0], USER_PASSWORD).await;
    let r = first
        .post(
            &reviews_path(&sku),
            &json!({"rating": 1, "title": "edited"}),
        )
        .await
        .expect_status(200, "an old review edited");
    assert_eq!(r.body["id"], 1, "{}", r.text);
    let late = shop.login_as(&waiting, USER_PASSWORD).await;
    let r = post_review(&late, &sku, &json!({"rating": 5, "title": "late"}))
        .await
        .expect_status(201, "a waiting buyer's review");
    assert_eq!(r.body["id"], 4, "{}", r.text);
    // The admin shows review 2 again: every review counts.
    let admin = server.admin().await;
    admin
        .post(&format!("{}/2/unhide", reviews_path(&sku)), &json!({}))
        .await
        .expect_status(200, "unhide an old review");
    let page = listing(&shop, &sku, "").await;
    assert_eq!(page["count"], 4, "{page}");
    assert_eq!(page["histogram"], histogram([1, 0, 0, 1, 2]), "{page}");
}
