//! Catalog administration and search: admin create, update and archive; concurrent edits
//! refused by `If-Match` (412); full-text search
//! with typo tolerance, filters, sorts, pages and category facets on a fixed catalog made
//! through the API; search following product and stock changes; archived products leaving
//! listings and carts but not orders; validation of the listing's parameters; and the
//! measured lag from a committed change to its visibility in search.

use std::time::{Duration, Instant};

use agora_tests::*;

/// A word no other test uses (lowercase letters and digits, one token).
fn tag() -> String {
    format!("zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A category no other test uses.
fn category() -> String {
    format!("s-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[allow(clippy::too_many_arguments)]
async fn create(
    admin: &Client,
    name: &str,
    description: &str,
    category: &str,
    price: u64,
    stock: u64,
    attributes: Value,
) -> Value {
    let sku = unique_sku();
    let r = admin
        .post(
            "/api/v1/products",
            &json!({
                "sku": sku, "name": name, "description": description, "category": category,
                "price": {"amount_minor": price, "currency": "INR"}, "attributes": attributes,
            }),
        )
        .await
        .expect_status(201, &format!("create {name}"));
    assert_eq!(r.body["attributes"], attributes, "{}", r.text);
    assert_eq!(r.body["rating"], 0.0, "{}", r.text);
    assert!(r.body.get("archived").is_none(), "{}", r.text);
    if stock > 0 {
        admin.receive(&sku, stock).await;
    }
    r.body
}

async fn search(shop: &Client, query: &str) -> Value {
    shop.get(&format!("/api/v1/products?{query}"))
        .await
        .expect_status(200, &format!("search {query}"))
        .body
}

fn skus_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["sku"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn sku(product: &Value) -> String {
    product["sku"].as_str().expect("sku").to_string()
}

/// Polls the search `query` until `pred` holds for its page.
async fn search_until(
    shop: &Client,
    query: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    poll_until(
        &format!("search {query} to show {what}"),
        POLL_TIMEOUT,
        || async {
            let page = search(shop, query).await;
            if pred(&page) {
                Ok(page)
            } else {
                Err(page.to_string())
            }
        },
    )
    .await
}

async fn patch(client: &Client, sku: &str, body: &Value) -> Resp {
    client
        .send(
            client
                .req(Method::PATCH, &format!("/api/v1/products/{sku}"))
                .json(body),
        )
        .await
}

async fn archive(client: &Client, sku: &str) -> Resp {
    client
        .post(&format!("/api/v1/products/{sku}/archive"), &json!({}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_filters_sorts_pages_and_follows_updates_and_archives() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let t = tag();
    let (cat, other_cat) = (category(), category());

    // A fixed catalog: four products sharing the word `t`.
    let headphones = create(
        &admin,
        &format!("Wireless Headphones {t}"),
        "Over-ear, noise cancelling",
        &cat,
        799_900,
        5,
        json!({"color": "black", "brand": "Sonora"}),
    )
    .await;
    let earbuds = create(
        &admin,
        &format!("Bluetooth Earbuds {t}"),
        "Small and light",
        &cat,
        249_900,
        0,
        json!({}),
    )
    .await;
    let speaker = create(
        &admin,
        &format!("Portable Speaker {t}"),
        "Pairs with your headphones",
        &cat,
        349_900,
        2,
        json!({}),
    )
    .await;
    let kettle = create(
        &admin,
        &format!("Electric Kettle {t}"),
        "Boils water",
        &other_cat,
        149_900,
        1,
        json!({}),
    )
    .await;
    let (hp, eb, spk, ket) = (sku(&headphones), sku(&earbuds), sku(&speaker), sku(&kettle));

    // Every product and its stock reach the index.
    let all = search_until(&shop, &format!("q={t}&in_stock=true"), "3 in stock", |p| {
        p["total"] == 3
    })
    .await;
    let mut in_stock = skus_of(&all);
    in_stock.sort();
    let mut want = vec![hp.clone(), spk.clone(), ket.clone()];
    want.sort();
    assert_eq!(in_stock, want, "in_stock=true: {all}");
    let page = search(&shop, &format!("q={t}")).await;
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(
        page["facets"]["category"],
        json!([{"value": cat, "count": 3}, {"value": other_cat, "count": 1}]),
        "facets: {page}"
    );
    let first = &page["items"][0];
    for field in [
        "sku",
        "name",
        "description",
        "category",
        "attributes",
        "price",
        "available",
        "rating",
        "created_at",
    ] {
        assert!(first.get(field).is_some(), "item lacks {field}: {first}");
    }

    // Typos: a misspelled word still finds the product, the exact name first.
    for typo in ["hedphones", "headphnoes", "wireles", "HEADFONES"] {
        let page = search(&shop, &format!("q={typo}+{t}")).await;
        assert_eq!(
            skus_of(&page).first(),
            Some(&hp),
            "q={typo}: the headphones first: {page}"
        );
    }
    // Attributes are searchable, with typos too.
    let page = search(&shop, &format!("q=sonorra+{t}")).await;
    assert_eq!(skus_of(&page), vec![hp.clone()], "{page}");
    // Every word must match.
    let page = search(&shop, &format!("q=kettle+headphones+{t}")).await;
    assert_eq!(page["total"], 0, "{page}");

    // Filters are exact, and combine.
    let page = search(&shop, &format!("q={t}&category={cat}&sort=price_asc")).await;
    assert_eq!(skus_of(&page), vec![eb.clone(), spk.clone(), hp.clone()]);
    assert_eq!(
        page["facets"]["category"],
        json!([{"value": cat, "count": 3}])
    );
    let page = search(
        &shop,
        &format!("q={t}&min_price=249900&max_price=349900&sort=price_asc"),
    )
    .await;
    assert_eq!(skus_of(&page), vec![eb.clone(), spk.clone()], "{page}");
    let page = search(
        &shop,
        &format!("q={t}&category={cat}&in_stock=true&max_price=500000"),
    )
    .await;
    assert_eq!(skus_of(&page), vec![spk.clone()], "{page}");
    let page = search(&shop, &format!("q={t}&min_rating=0.5")).await;
    assert_eq!(page["total"], 0, "no reviews yet: {page}");
    let page = search(&shop, &format!("q={t}&min_rating=0")).await;
    assert_eq!(page["total"], 4, "{page}");

    // Sorts are exact; ties go by SKU.
    let page = search(&shop, &format!("q={t}&sort=price_desc")).await;
    assert_eq!(
        skus_of(&page),
        vec![hp.clone(), spk.clone(), eb.clone(), ket.clone()]
    );
    let mut by_newest = [&headphones, &earbuds, &speaker, &kettle]
        .iter()
        .map(|p| (p["created_at"].as_str().unwrap_or("").to_string(), sku(p)))
        .collect::<Vec<_>>();
    by_newest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let page = search(&shop, &format!("q={t}&sort=newest")).await;
    assert_eq!(
        skus_of(&page),
        by_newest.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
    );
    let mut by_sku = vec![hp.clone(), eb.clone(), spk.clone(), ket.clone()];
    by_sku.sort();
    let page = search(&shop, &format!("q={t}&sort=rating")).await;
    assert_eq!(skus_of(&page), by_sku, "all unrated: SKU order");

    // Pages: stable, disjoint, with the total and facets of every match.
    let p1 = search(&shop, &format!("q={t}&sort=price_asc&per_page=3&page=1")).await;
    let p2 = search(&shop, &format!("q={t}&sort=price_asc&per_page=3&page=2")).await;
    assert_eq!(skus_of(&p1), vec![ket.clone(), eb.clone(), spk.clone()]);
    assert_eq!(skus_of(&p2), vec![hp.clone()]);
    for p in [&p1, &p2] {
        assert_eq!(p["total"], 4, "{p}");
        assert_eq!(p["facets"]["category"][0]["count"], 3, "{p}");
    }
    assert_eq!(p2["page"], 2);
    assert_eq!(p2["per_page"], 3);

    // Update: name, attributes and price; search follows.
    let r = patch(
        &admin,
        &hp,
        &json!({"name": format!("Studio Monitors {t}"), "attributes": {"color": "matte white"},
                "price": {"amount_minor": 99_000, "currency": "INR"}}),
    )
    .await
    .expect_status(200, "update the headphones");
    assert_eq!(r.body["name"], format!("Studio Monitors {t}"), "{}", r.text);
    assert_eq!(
        r.body["description"], "Over-ear, noise cancelling",
        "{}",
        r.text
    );
    assert_eq!(
        r.body["attributes"],
        json!({"color": "matte white"}),
        "{}",
        r.text
    );
    assert_eq!(r.body["available"], 5, "{}", r.text);
    search_until(
        &shop,
        &format!("q=monitors+{t}"),
        "the renamed product",
        |p| skus_of(p) == vec![hp.clone()],
    )
    .await;
    let page = search(&shop, &format!("q=wireless+{t}")).await;
    assert_eq!(page["total"], 0, "the old name is gone: {page}");
    let page = search(&shop, &format!("q=mate+whte+{t}")).await;
    assert_eq!(
        skus_of(&page),
        vec![hp.clone()],
        "typos in attributes: {page}"
    );
    let page = search(&shop, &format!("q={t}&sort=price_asc&per_page=1")).await;
    assert_eq!(
        skus_of(&page),
        vec![hp.clone()],
        "the new price sorts: {page}"
    );
    let one = shop
        .get(&format!("/api/v1/products/{hp}"))
        .await
        .expect_status(200, "get the updated product");
    assert_eq!(one.body["price"]["amount_minor"], 99_000, "{}", one.text);
    // The same update again changes nothing and answers the same.
    let again = patch(
        &admin,
        &hp,
        &json!({"price": {"amount_minor": 99_000, "currency": "INR"}}),
    )
    .await
    .expect_status(200, "repeat the update");
    assert_eq!(again.body["name"], format!("Studio Monitors {t}"));
    // Category moves change the facets.
    patch(&admin, &ket, &json!({"category": cat}))
        .await
        .expect_status(200, "move the kettle");
    search_until(&shop, &format!("q={t}"), "one category", |p| {
        p["facets"]["category"] == json!([{"value": cat, "count": 4}])
    })
    .await;

    // Stock running out leaves the in-stock results.
    admin
        .post(
            &format!("/api/v1/inventory/{spk}/write-off"),
            &json!({"quantity": 2}),
        )
        .await
        .expect_status(200, "write off the speakers");
    search_until(
        &shop,
        &format!("q={t}&in_stock=true"),
        "the speaker out of stock",
        |p| p["total"] == 2 && !skus_of(p).contains(&spk),
    )
    .await;

    // Archive: gone from search, listings, product reads and carts.
    let r = archive(&admin, &eb)
        .await
        .expect_status(200, "archive the earbuds");
    assert_eq!(r.body["archived"], true, "{}", r.text);
    search_until(&shop, &format!("q={t}"), "three products", |p| {
        p["total"] == 3 && !skus_of(p).contains(&eb)
    })
    .await;
    let page = search(&shop, &format!("category={cat}&per_page=100")).await;
    assert!(!skus_of(&page).contains(&eb), "listing: {page}");
    assert_eq!(page["facets"]["category"][0]["count"], 3, "{page}");
    shop.get(&format!("/api/v1/products/{eb}"))
        .await
        .expect_status(404, "read an archived product")
        .assert_problem("archived product");
    let (user, _) = shop.new_user().await;
    user.post("/api/v1/cart/items", &json!({"sku": eb, "quantity": 1}))
        .await
        .expect_status(404, "add an archived product to a cart")
        .assert_problem("archived product in cart");
    archive(&admin, &eb)
        .await
        .expect_status(200, "archive again");
    patch(&admin, &eb, &json!({"name": "Back"}))
        .await
        .expect_status(409, "update an archived product")
        .assert_problem("update archived");
    admin
        .post(
            "/api/v1/products",
            &json!({"sku": eb, "name": "Again", "category": "test",
                    "price": {"amount_minor": 100, "currency": "INR"}}),
        )
        .await
        .expect_status(409, "create over an archived SKU");

    // Admin only; unknown products; bad updates change nothing.
    patch(&user, &hp, &json!({"name": "Mine"}))
        .await
        .expect_status(403, "a customer updates")
        .assert_problem("customer update");
    patch(&shop, &hp, &json!({"name": "Mine"}))
        .await
        .expect_status(401, "anonymous update")
        .assert_problem("anonymous update");
    archive(&user, &hp)
        .await
        .expect_status(403, "a customer archives")
        .assert_problem("customer archive");
    patch(&admin, "T-NO-SUCH-SKU", &json!({"name": "x"}))
        .await
        .expect_status(404, "update unknown")
        .assert_problem("update unknown");
    archive(&admin, "T-NO-SUCH-SKU")
        .await
        .expect_status(404, "archive unknown")
        .assert_problem("archive unknown");
    for (name, body, field) in [
        ("empty update", json!({}), Some("body")),
        ("unknown field", json!({"nmae": "typo"}), None),
        ("empty name", json!({"name": " "}), Some("name")),
        (
            "bad category",
            json!({"category": "Not A Slug"}),
            Some("category"),
        ),
        (
            "zero price",
            json!({"price": {"amount_minor": 0, "currency": "INR"}}),
            Some("price.amount_minor"),
        ),
        (
            "USD price",
            json!({"price": {"amount_minor": 10, "currency": "USD"}}),
            Some("price.currency"),
        ),
        (
            "bad attribute name",
            json!({"attributes": {"Bad Key": "x"}}),
            Some("attributes"),
        ),
        (
            "empty attribute value",
            json!({"attributes": {"size": ""}}),
            Some("attributes.size"),
        ),
        ("price as a string", json!({"price": "10"}), None),
    ] {
        let r = patch(&admin, &hp, &body).await;
        r.assert_problem(name);
        assert_eq!(r.status, 422, "{name}: {}", r.text);
        if let Some(f) = field {
            assert_eq!(r.body["field"], f, "{name}: {}", r.text);
        }
    }
    let one = shop
        .get(&format!("/api/v1/products/{hp}"))
        .await
        .expect_status(200, "after bad updates");
    assert_eq!(
        one.body["name"],
        format!("Studio Monitors {t}"),
        "{}",
        one.text
    );
    assert_eq!(one.body["price"]["amount_minor"], 99_000, "{}", one.text);

    // The OpenAPI document has the new routes.
    let doc = shop
        .get("/openapi.json")
        .await
        .expect_status(200, "openapi");
    assert!(doc.body["paths"]["/api/v1/products/{sku}"]["patch"].is_object());
    assert!(doc.body["paths"]["/api/v1/products/{sku}/archive"]["post"].is_object());
    let params = doc.body["paths"]["/api/v1/products"]["get"]["parameters"].to_string();
    for p in ["min_price", "max_price", "in_stock", "min_rating", "sort"] {
        assert!(params.contains(p), "openapi lacks {p}: {params}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_leaves_placed_orders_alone_and_blocks_checkout() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(12_000, 5).await;
    let (buyer, _) = shop.new_user().await;
    let (late, _) = shop.new_user().await;
    buyer.add_to_cart(&sku, 2).await;
    let order_id = buyer.place_order(card(CARD_OK)).await;
    late.add_to_cart(&sku, 1).await;

    archive(&admin, &sku).await.expect_status(200, "archive");

    // The order placed before goes on to delivery, its lines and price intact.
    let order = wait_for_order(&buyer, &order_id, &["DELIVERED"]).await;
    assert_eq!(order["lines"][0]["sku"], sku.as_str(), "{order}");
    assert_eq!(order["lines"][0]["quantity"], 2, "{order}");
    assert_eq!(order["lines"][0]["unit_price_minor"], 12_000, "{order}");
    assert_eq!(order["total"]["amount_minor"], 24_000, "{order}");
    let inv = admin.inventory(&sku).await;
    assert_eq!(inv.sold, 2, "{inv:?}");

    // A cart holding it still reads, but cannot check out; its lines stay.
    let cart = late.cart().await;
    assert_eq!(cart_quantity(&cart, &sku), 1, "{cart}");
    let r = late
        .checkout(Some(&unique_key()), &checkout_body(card(CARD_OK)))
        .await
        .expect_status(409, "check out an archived product");
    r.assert_problem("checkout archived");
    assert!(
        r.body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("product-archived")),
        "{}",
        r.text
    );
    assert_eq!(r.body["sku"], sku.as_str(), "{}", r.text);
    let cart = late.cart().await;
    assert_eq!(cart_quantity(&cart, &sku), 1, "lines restored: {cart}");
    late.delete(&format!("/api/v1/cart/items/{sku}"))
        .await
        .expect_status(200, "remove the archived line");

    // Stock of an archived product can still be managed.
    admin.receive(&sku, 1).await;
    assert_eq!(admin.inventory(&sku).await.available, 4);
    let page = search(&shop, &format!("q={sku}")).await;
    assert!(!skus_of(&page).contains(&sku), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_rebuilt_from_the_store_after_a_crash() {
    let mut server = AgoraProcess::start(ServerOptions::fast());
    let admin = server.admin().await;
    let t = tag();
    let cat = category();
    let kept = create(
        &admin,
        &format!("Garden Spade {t}"),
        "Steel blade",
        &cat,
        45_000,
        3,
        json!({"handle": "ash wood"}),
    )
    .await;
    let gone = create(
        &admin,
        &format!("Garden Rake {t}"),
        "Twelve teeth",
        &cat,
        30_000,
        0,
        json!({}),
    )
    .await;
    let (kept, gone) = (sku(&kept), sku(&gone));
    patch(
        &admin,
        &kept,
        &json!({"name": format!("Border Spade {t}"), "price": {"amount_minor": 47_500, "currency": "INR"}}),
    )
    .await
    .expect_status(200, "update");
    archive(&admin, &gone).await.expect_status(200, "archive");

    // Acknowledged changes survive a SIGKILL, and the index is rebuilt from them at start.
    server.restart();
    let shop = server.client();
    let page = search(&shop, &format!("q={t}")).await;
    assert_eq!(skus_of(&page), vec![kept.clone()], "after restart: {page}");
    let item = &page["items"][0];
    assert_eq!(item["name"], format!("Border Spade {t}"), "{item}");
    assert_eq!(item["price"]["amount_minor"], 47_500, "{item}");
    assert_eq!(item["available"], 3, "{item}");
    assert_eq!(item["attributes"], json!({"handle": "ash wood"}), "{item}");
    let page = search(
        &shop,
        &format!("q=asch+wod+{t}&in_stock=true&category={cat}"),
    )
    .await;
    assert_eq!(skus_of(&page), vec![kept.clone()], "{page}");
    assert_eq!(
        page["facets"]["category"],
        json!([{"value": cat, "count": 1}])
    );
    shop.get(&format!("/api/v1/products/{gone}"))
        .await
        .expect_status(404, "archived after restart");
}

/// `PATCH` with `If-Match: <tag>`.
async fn patch_if_match(client: &Client, sku: &str, etag: &str, body: &Value) -> Resp {
    let rb = client
        .req(Method::PATCH, &format!("/api/v1/products/{sku}"))
        .header("If-Match", etag)
        .json(body);
    client.send(rb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_editing_one_product_never_overwrite_each_other() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let (shop, admin) = (server.client(), server.admin().await);
    let p = create(
        &admin,
        "Kettle",
        "Boils water",
        &category(),
        1_000,
        0,
        json!({}),
    )
    .await;
    let sku = sku(&p);
    let read = shop
        .get(&format!("/api/v1/products/{sku}"))
        .await
        .expect_status(200, "read");
    let etag = read
        .header("etag")
        .expect("a read carries an ETag")
        .to_string();

    // Both admins read the same version; the first edit wins and answers a new version.
    let first = patch_if_match(&admin, &sku, &etag, &json!({"name": "Kettle Pro"}))
        .await
        .expect_status(200, "the first edit");
    let newer = first
        .header("etag")
        .expect("an edit answers its ETag")
        .to_string();
    assert_ne!(newer, etag);
    let second = patch_if_match(
        &admin,
        &sku,
        &etag,
        &json!({"price": {"amount_minor": 1, "currency": "INR"}}),
    )
    .await;
    assert_eq!(second.status, 412, "{}", second.text);
    second.assert_problem("a stale If-Match");
    let now = shop
        .get(&format!("/api/v1/products/{sku}"))
        .await
        .expect_status(200, "read again");
    assert_eq!(now.body["name"], "Kettle Pro", "{}", now.text);
    assert_eq!(
        now.body["price"]["amount_minor"], 1_000,
        "the stale edit changed nothing"
    );
    assert_eq!(now.header("etag"), Some(newer.as_str()));

    // The current tag, `*` and no header all apply; garbage is a 400.
    patch_if_match(&admin, &sku, &newer, &json!({"description": "Fast"}))
        .await
        .expect_status(200, "current tag");
    patch_if_match(&admin, &sku, "*", &json!({"description": "Faster"}))
        .await
        .expect_status(200, "any version");
    patch(&admin, &sku, &json!({"description": "Fastest"}))
        .await
        .expect_status(200, "no precondition");
    let bad = patch_if_match(&admin, &sku, ",", &json!({"description": "x"})).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    bad.assert_problem("a malformed If-Match");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_parameters_are_validated() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let long_q = "a".repeat(201);
    let long_cat = "c".repeat(65);
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        (format!("q={long_q}"), 422, Some("q")),
        ("per_page=0".into(), 422, Some("per_page")),
        ("per_page=101".into(), 422, Some("per_page")),
        ("page=0".into(), 422, Some("page")),
        ("page=abc".into(), 400, None),
        (format!("category={long_cat}"), 422, Some("category")),
        ("min_price=-1".into(), 422, Some("min_price")),
        ("min_price=abc".into(), 422, Some("min_price")),
        ("min_price=1.5".into(), 422, Some("min_price")),
        ("max_price=1000000000001".into(), 422, Some("max_price")),
        (
            "max_price=99999999999999999999999".into(),
            422,
            Some("max_price"),
        ),
        ("min_price=500&max_price=100".into(), 422, Some("min_price")),
        ("in_stock=yes".into(), 422, Some("in_stock")),
        ("min_rating=5.5".into(), 422, Some("min_rating")),
        ("min_rating=-0.1".into(), 422, Some("min_rating")),
        ("min_rating=NaN".into(), 422, Some("min_rating")),
        ("min_rating=inf".into(), 422, Some("min_rating")),
        ("sort=cheapest".into(), 422, Some("sort")),
        ("sort=PRICE_ASC".into(), 422, Some("sort")),
        ("sort=price_asc&sort=newest".into(), 400, None),
    ];
    let mut failures = Vec::new();
    for (query, status, field) in &cases {
        let r = shop.get(&format!("/api/v1/products?{query}")).await;
        if r.status != *status || !r.is_problem_json() {
            failures.push(format!(
                "{query}: expected {status} problem, got {} {}",
                r.status, r.text
            ));
            continue;
        }
        if let Some(f) = field {
            if r.body["field"] != *f {
                failures.push(format!("{query}: expected field {f}: {}", r.text));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    for ok in [
        "min_price=0&max_price=1000000000000",
        "min_price=&max_price=&in_stock=&min_rating=&sort=",
        "min_rating=5",
        "min_rating=0",
        "in_stock=false",
        "in_stock=true&sort=newest",
        "sort=relevance&q=tea",
        "sort=rating&per_page=100&page=10000",
        "q=%00%01%E2%80%AE",
        "category=does-not-exist",
    ] {
        let r = shop.get(&format!("/api/v1/products?{ok}")).await;
        assert_eq!(r.status, 200, "{ok}: {}", r.text);
        assert!(r.body["facets"]["category"].is_array(), "{ok}: {}", r.text);
    }
    // The demo catalog is listed in SKU order by default, as before.
    let page = search(&shop, "per_page=100").await;
    let listed = skus_of(&page);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "default order is by SKU");
    let page = search(&shop, "q=tea").await;
    assert!(
        skus_of(&page).contains(&"GROC-TEA-01".to_string()),
        "q=tea finds the demo tea: {page}"
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Polls `query` without pausing until `pred` holds; the time from `since` to then. The
/// harness's `poll_until` waits 50 ms between tries, too coarse for this measurement.
async fn visible_after(
    shop: &Client,
    query: &str,
    since: Instant,
    pred: impl Fn(&Value) -> bool,
) -> Duration {
    let deadline = since + POLL_TIMEOUT;
    loop {
        let page = search(shop, query).await;
        if pred(&page) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{query} never showed the change: {page}"
        );
        tokio::task::yield_now().await;
    }
}

/// Measures (reports, does not assert) the lag from an acknowledged product or stock change
/// to its visibility in search, end to end over HTTP, and the node's own measure of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_visibility_lag_is_measured() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(10_000, 1).await;
    search_until(
        &shop,
        &format!("q={sku}&in_stock=true"),
        "the product",
        |p| p["total"] == 1,
    )
    .await;

    let mut price_lags = Vec::new();
    for i in 0..60u64 {
        let price = 20_000 + i;
        patch(
            &admin,
            &sku,
            &json!({"price": {"amount_minor": price, "currency": "INR"}}),
        )
        .await
        .expect_status(200, "update the price");
        let acked = Instant::now();
        let q = format!("q={sku}&min_price={price}&max_price={price}");
        price_lags.push(visible_after(&shop, &q, acked, |p| p["total"] == 1).await);
    }
    let mut stock_lags = Vec::new();
    for i in 0..30 {
        let (path, want) = if i % 2 == 0 {
            ("write-off", 0)
        } else {
            ("receive", 1)
        };
        admin
            .post(
                &format!("/api/v1/inventory/{sku}/{path}"),
                &json!({"quantity": 1}),
            )
            .await
            .expect_status(200, path);
        let acked = Instant::now();
        let q = format!("q={sku}&in_stock=true");
        stock_lags.push(visible_after(&shop, &q, acked, |p| p["total"] == want).await);
    }
    for (what, lags) in [
        ("price update", &mut price_lags),
        ("stock flip", &mut stock_lags),
    ] {
        lags.sort();
        eprintln!(
            "search visibility lag after a {what} (n = {}, end to end over HTTP): p50 {:?}, p99 {:?}, max {:?}",
            lags.len(),
            percentile(lags, 0.5),
            percentile(lags, 0.99),
            lags.last().copied().unwrap_or_default(),
        );
    }
    let metrics = server
        .admin_port_client()
        .get("/metrics")
        .await
        .expect_status(200, "metrics");
    let lines: Vec<&str> = metrics
        .text
        .lines()
        .filter(|l| l.starts_with("agora_search_visibility_seconds"))
        .collect();
    assert!(
        !lines.is_empty(),
        "the node reports agora_search_visibility_seconds: {}",
        metrics.text.chars().take(2000).collect::<String>()
    );
    eprintln!(
        "node's measure (commit to searchable, seconds):\n{}",
        lines.join("\n")
    );
}
