//! A table of hostile or malformed requests: each must get a 4xx
//! `application/problem+json` answer (never a 5xx) and change nothing.

use agora_tests::*;

/// Who the request claims to be.
#[derive(Clone)]
enum Auth {
    None,
    User,
    Admin,
    /// Verbatim `Authorization` header value.
    Header(String),
}

/// What the request carries.
#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes with an optional content type.
    Raw(Vec<u8>, Option<&'static str>),
}

struct Case {
    name: String,
    method: Method,
    path: String,
    auth: Auth,
    idempotency_key: Option<String>,
    body: Body,
    /// Acceptable statuses; empty means "any 4xx".
    expect: Vec<u16>,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        auth: Auth::User,
        idempotency_key: None,
        body: Body::None,
        expect: Vec::new(),
    }
}

impl Case {
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    fn json(mut self, v: Value) -> Self {
        self.body = Body::Json(v);
        self
    }
    fn raw(mut self, bytes: impl Into<Vec<u8>>, ct: Option<&'static str>) -> Self {
        self.body = Body::Raw(bytes.into(), ct);
        self
    }
    fn key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    fn expect(mut self, codes: &[u16]) -> Self {
        self.expect = codes.to_vec();
        self
    }
}

/// Everything a bad request could have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    cart: Value,
    inventory: Inventory,
    product: Value,
    product_total: Value,
    orders: Vec<Value>,
    notifications: Vec<Value>,
    admin_orders: Vec<Value>,
}

async fn snapshot(shop: &Client, user: &Client, admin: &Client, sku: &str) -> Snapshot {
    let list = shop
        .get("/api/v1/products?per_page=50")
        .await
        .expect_status(200, "list products");
    Snapshot {
        cart: user.cart().await,
        inventory: admin.inventory(sku).await,
        product: shop
            .get(&format!("/api/v1/products/{sku}"))
            .await
            .expect_status(200, "get product")
            .body,
        product_total: list.body["total"].clone(),
        orders: user.orders().await,
        notifications: user.notifications().await,
        admin_orders: admin.orders().await,
    }
}

/// A real token with its claims edited (role -> admin) but the original signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 {
        if let Some(mut claims) = b64url_decode(parts[1])
            .and_then(|p| serde_json::from_slice::<serde_json::Map<String, Value>>(&p).ok())
        {
            claims.insert("role".into(), json!("admin"));
            claims.insert("roles".into(), json!(["admin"]));
            claims.insert("sub".into(), json!(uuid::Uuid::new_v4().to_string()));
            let payload = b64url(Value::Object(claims).to_string().as_bytes());
            return format!("{}.{payload}.{}", parts[0], parts[2]);
        }
    }
    // Opaque token: flip one character in the middle.
    let mut chars: Vec<char> = token.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Same header and claims as a real token, signature replaced by random bytes.
fn resigned(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 {
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            b64url(uuid::Uuid::new_v4().as_bytes())
        )
    } else {
        format!("{token}x")
    }
}

/// Records why an answer to a bad request is unacceptable, if it is.
fn check_answer(c: &Case, r: &Resp, failures: &mut Vec<String>) {
    let snippet: String = r.text.chars().take(300).collect();
    if !(400..500).contains(&r.status) {
        failures.push(format!(
            "{}: expected 4xx, got {} {snippet}",
            c.name, r.status
        ));
        return;
    }
    if !c.expect.is_empty() && !c.expect.contains(&r.status) {
        failures.push(format!(
            "{}: expected {:?}, got {} {snippet}",
            c.name, c.expect, r.status
        ));
    }
    if !r.is_problem_json() {
        failures.push(format!(
            "{}: HTTP {} with content-type {:?} instead of application/problem+json: {snippet}",
            c.name, r.status, r.content_type
        ));
        return;
    }
    let fields_ok = ["type", "title", "detail"]
        .iter()
        .all(|f| r.body.get(*f).is_some_and(Value::is_string))
        && r.body.get("status").and_then(Value::as_u64) == Some(u64::from(r.status));
    if !fields_ok {
        failures.push(format!(
            "{}: problem document needs string type/title/detail and status == {}: {snippet}",
            c.name, r.status
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_problem_4xx_and_change_nothing() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let shop = server.client();
    let admin = server.admin().await;
    let sku = admin.stocked_product(4_999, 10).await;
    let (user, email) = shop.new_user().await;
    user.add_to_cart(&sku, 1).await;
    let user_token = user.token.clone().expect("user token");
    let admin_token = admin.token.clone().expect("admin token");
    // Let the catalog projection catch up before taking the reference snapshot.
    wait_for_product_available(&shop, &sku, 10).await;
    let before = snapshot(&shop, &user, &admin, &sku).await;

    let now = unix_now();
    let forged_admin = forged_jwt(&json!({
        "sub": uuid::Uuid::new_v4().to_string(),
        "email": ADMIN_EMAIL,
        "role": "admin",
        "iat": now,
        "exp": now + 3600,
    }));
    let expired = forged_jwt(&json!({
        "sub": uuid::Uuid::new_v4().to_string(),
        "role": "user",
        "iat": now - 7200,
        "exp": now - 3600,
    }));
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(
            json!({"sub": uuid::Uuid::new_v4().to_string(), "role": "admin", "exp": now + 3600})
                .to_string()
                .as_bytes()
        )
    );
    let two_mib = 2 * 1024 * 1024;
    let huge_sku_json = format!(r#"{{"sku":"{}","quantity":1}}"#, "A".repeat(two_mib));
    let long_sku = "A".repeat(10_000);
    let long_name = "n".repeat(10_000);
    let good_checkout = checkout_body(card(CARD_OK));
    let with_payment = checkout_body;
    let with_address = |a: Value| json!({"payment": card(CARD_OK), "shipping_address": a});
    let mut addr_no_city = shipping_address();
    addr_no_city.as_object_mut().expect("object").remove("city");
    let mut addr_nul = shipping_address();
    addr_nul["name"] = json!("Asha\u{0}Rao");
    let product = |name: &str, category: &str, price: Value| {
        json!({
            "sku": unique_sku(),
            "name": name,
            "description": "bad input test",
            "category": category,
            "price": price,
        })
    };
    let inr = |amount: i64| json!({"amount_minor": amount, "currency": "INR"});
    let mut rejected_emails = Vec::new();
    let mut register = |name: &str, display: Value| {
        let email = unique_email();
        rejected_emails.push(email.clone());
        case(format!("register: {name}"), Method::POST, "/api/v1/users")
            .auth(Auth::None)
            .json(json!({"email": email, "password": USER_PASSWORD, "name": display}))
    };

    let post_cart = || case("", Method::POST, "/api/v1/cart/items");
    let cart_qty = |name: &str, q: &str| {
        let mut c = post_cart().raw(
            format!(r#"{{"sku":"{sku}","quantity":{q}}}"#),
            Some("application/json"),
        );
        c.name = format!("cart quantity {name}");
        c
    };
    let checkout = |name: &str, body: Value| {
        case(format!("checkout: {name}"), Method::POST, "/api/v1/orders")
            .key(unique_key())
            .json(body)
    };

    let mut cases = vec![
        // --- malformed / wrongly typed bodies ---
        {
            let mut c = post_cart().raw(r#"{"sku": "T-1", "quantity": "#, Some("application/json"));
            c.name = "malformed JSON".into();
            c
        },
        {
            let mut c = post_cart().raw("hello", Some("application/json"));
            c.name = "not JSON".into();
            c
        },
        {
            let mut c = post_cart().raw("[]", Some("application/json"));
            c.name = "JSON array body".into();
            c
        },
        {
            let mut c = post_cart().raw("null", Some("application/json"));
            c.name = "JSON null body".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"sku": 123, "quantity": "one"}));
            c.name = "wrong types".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"sku": sku, "quantity": "1"}));
            c.name = "quantity as string".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"sku": sku}));
            c.name = "missing quantity".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"quantity": 1}));
            c.name = "missing sku".into();
            c
        },
        {
            let mut c = post_cart().raw(format!(r#"{{"sku":"{sku}","quantity":1}}"#), None);
            c.name = "no content-type".into();
            c
        },
        {
            let mut c = post_cart().raw(
                format!(r#"{{"sku":"{sku}","quantity":1}}"#),
                Some("text/plain"),
            );
            c.name = "text/plain content-type".into();
            c
        },
        // --- quantities ---
        cart_qty("zero", "0"),
        cart_qty("negative", "-1"),
        cart_qty("101", "101"),
        cart_qty("10^12", "1000000000000"),
        cart_qty("2^63", "9223372036854775808"),
        cart_qty("2^64", "18446744073709551616"),
        cart_qty("fractional", "1.5"),
        cart_qty("null", "null"),
        // --- SKUs ---
        {
            let mut c = post_cart()
                .json(json!({"sku": "T-DOES-NOT-EXIST-1", "quantity": 1}))
                .expect(&[404]);
            c.name = "unknown sku".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"sku": format!("{sku}\u{0}"), "quantity": 1}));
            c.name = "sku with NUL".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"sku": long_sku, "quantity": 1}));
            c.name = "10k-char sku".into();
            c
        },
        {
            let mut c = post_cart().json(json!({"sku": "", "quantity": 1}));
            c.name = "empty sku".into();
            c
        },
        case(
            "GET product with 10k-char sku",
            Method::GET,
            format!("/api/v1/products/{long_sku}"),
        ),
        case(
            "DELETE cart line with 10k-char sku",
            Method::DELETE,
            format!("/api/v1/cart/items/{long_sku}"),
        ),
        case(
            "GET unknown product",
            Method::GET,
            "/api/v1/products/T-NOPE-404",
        )
        .expect(&[404]),
        case(
            "path traversal in sku",
            Method::GET,
            "/api/v1/products/..%2F..%2Fetc%2Fpasswd",
        ),
        case("page=abc", Method::GET, "/api/v1/products?page=abc"),
        case("per_page=-1", Method::GET, "/api/v1/products?per_page=-1"),
        // --- authentication ---
        case("GET cart without token", Method::GET, "/api/v1/cart")
            .auth(Auth::None)
            .expect(&[401]),
        {
            let mut c = post_cart()
                .auth(Auth::None)
                .json(json!({"sku": sku, "quantity": 1}))
                .expect(&[401]);
            c.name = "add to cart without token".into();
            c
        },
        case("garbage bearer token", Method::GET, "/api/v1/cart")
            .auth(Auth::Header("Bearer garbage".into()))
            .expect(&[401]),
        case("empty bearer token", Method::GET, "/api/v1/cart")
            .auth(Auth::Header("Bearer ".into()))
            .expect(&[401]),
        case("basic auth", Method::GET, "/api/v1/cart")
            .auth(Auth::Header("Basic YWRtaW46YWRtaW4=".into()))
            .expect(&[401]),
        case(
            "forged admin JWT (foreign secret)",
            Method::GET,
            format!("/api/v1/inventory/{sku}"),
        )
        .auth(Auth::Header(format!("Bearer {forged_admin}")))
        .expect(&[401]),
        case("expired JWT (foreign secret)", Method::GET, "/api/v1/cart")
            .auth(Auth::Header(format!("Bearer {expired}")))
            .expect(&[401]),
        case(
            "alg=none JWT",
            Method::GET,
            format!("/api/v1/inventory/{sku}"),
        )
        .auth(Auth::Header(format!("Bearer {alg_none}")))
        .expect(&[401]),
        case(
            "real token with edited claims",
            Method::GET,
            format!("/api/v1/inventory/{sku}"),
        )
        .auth(Auth::Header(format!("Bearer {}", tampered(&user_token))))
        .expect(&[401]),
        case(
            "real claims with a random signature",
            Method::GET,
            "/api/v1/cart",
        )
        .auth(Auth::Header(format!("Bearer {}", resigned(&user_token))))
        .expect(&[401]),
        case(
            "admin token with a random signature",
            Method::GET,
            format!("/api/v1/inventory/{sku}"),
        )
        .auth(Auth::Header(format!("Bearer {}", resigned(&admin_token))))
        .expect(&[401]),
        // --- authorisation ---
        case("user creates product", Method::POST, "/api/v1/products")
            .json(product("Sneaky", "test", inr(100)))
            .expect(&[403]),
        case("anonymous creates product", Method::POST, "/api/v1/products")
            .auth(Auth::None)
            .json(product("Sneaky", "test", inr(100)))
            .expect(&[401]),
        case(
            "user receives stock",
            Method::POST,
            format!("/api/v1/inventory/{sku}/receive"),
        )
        .json(json!({"quantity": 5}))
        .expect(&[403]),
        case(
            "anonymous writes off stock",
            Method::POST,
            format!("/api/v1/inventory/{sku}/write-off"),
        )
        .auth(Auth::None)
        .json(json!({"quantity": 1}))
        .expect(&[401]),
        case(
            "user reads inventory",
            Method::GET,
            format!("/api/v1/inventory/{sku}"),
        )
        .expect(&[403]),
        // --- products (as admin) ---
        case("product: bad category", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product("Fine name", "Not Valid!", inr(100))),
        case(
            "product: uppercase category",
            Method::POST,
            "/api/v1/products",
        )
        .auth(Auth::Admin)
        .json(product("Fine name", "Electronics", inr(100))),
        case("product: negative price", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product("Fine name", "test", inr(-100))),
        case("product: USD price", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product(
                "Fine name",
                "test",
                json!({"amount_minor": 100, "currency": "USD"}),
            )),
        case("product: price as string", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product(
                "Fine name",
                "test",
                json!({"amount_minor": "100", "currency": "INR"}),
            )),
        case("product: empty name", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product("", "test", inr(100))),
        case("product: NUL in name", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product("Tea\u{0}Pot", "test", inr(100))),
        case(
            "product: control character in name",
            Method::POST,
            "/api/v1/products",
        )
        .auth(Auth::Admin)
        .json(product("Tea\u{7}Pot\u{1b}[31m", "test", inr(100))),
        case(
            "product: RTL override in name",
            Method::POST,
            "/api/v1/products",
        )
        .auth(Auth::Admin)
        .json(product("Invoice\u{202E}fdp.exe", "test", inr(100))),
        case("product: 10k-char name", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(product(&long_name, "test", inr(100))),
        case("product: sku with spaces", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(json!({
                "sku": "T X$1", "name": "Fine", "description": "d",
                "category": "test", "price": inr(100),
            })),
        case("product: duplicate sku", Method::POST, "/api/v1/products")
            .auth(Auth::Admin)
            .json(json!({
                "sku": sku, "name": "Overwritten", "description": "d",
                "category": "test", "price": inr(1),
            })),
        // --- inventory (as admin) ---
        case(
            "receive zero",
            Method::POST,
            format!("/api/v1/inventory/{sku}/receive"),
        )
        .auth(Auth::Admin)
        .json(json!({"quantity": 0})),
        case(
            "receive negative",
            Method::POST,
            format!("/api/v1/inventory/{sku}/receive"),
        )
        .auth(Auth::Admin)
        .json(json!({"quantity": -5})),
        case(
            "receive 2^64",
            Method::POST,
            format!("/api/v1/inventory/{sku}/receive"),
        )
        .auth(Auth::Admin)
        .raw(r#"{"quantity":18446744073709551616}"#, Some("application/json")),
        case(
            "receive quantity as string",
            Method::POST,
            format!("/api/v1/inventory/{sku}/receive"),
        )
        .auth(Auth::Admin)
        .json(json!({"quantity": "10"})),
        case(
            "receive for unknown sku",
            Method::POST,
            "/api/v1/inventory/T-NOPE-404/receive",
        )
        .auth(Auth::Admin)
        .json(json!({"quantity": 1}))
        .expect(&[404]),
        case(
            "write-off more than available",
            Method::POST,
            format!("/api/v1/inventory/{sku}/write-off"),
        )
        .auth(Auth::Admin)
        .json(json!({"quantity": 11}))
        .expect(&[409]),
        case(
            "write-off zero",
            Method::POST,
            format!("/api/v1/inventory/{sku}/write-off"),
        )
        .auth(Auth::Admin)
        .json(json!({"quantity": 0})),
        // --- users / login ---
        case("register duplicate email", Method::POST, "/api/v1/users")
            .auth(Auth::None)
            .json(json!({"email": ADMIN_EMAIL, "password": USER_PASSWORD, "name": "Dup"}))
            .expect(&[409]),
        case("register short password", Method::POST, "/api/v1/users")
            .auth(Auth::None)
            .json(json!({"email": unique_email(), "password": "1234567", "name": "Short"})),
        case("register missing password", Method::POST, "/api/v1/users")
            .auth(Auth::None)
            .json(json!({"email": unique_email(), "name": "Nopass"})),
        case("login wrong password", Method::POST, "/api/v1/auth/login")
            .auth(Auth::None)
            .json(json!({"email": email, "password": "wrong-password-1"}))
            .expect(&[401]),
        case("login unknown user", Method::POST, "/api/v1/auth/login")
            .auth(Auth::None)
            .json(json!({"email": unique_email(), "password": USER_PASSWORD}))
            .expect(&[401]),
        case("login malformed", Method::POST, "/api/v1/auth/login")
            .auth(Auth::None)
            .raw("{email:", Some("application/json")),
        // --- checkout (the user's cart holds one unit) ---
        checkout("card number 1234", with_payment(card("1234"))),
        checkout("card number with letters", with_payment(card("4242abcd4242abcd"))),
        checkout("empty card number", with_payment(card(""))),
        checkout("card number too long", with_payment(card(&"4".repeat(40)))),
        checkout(
            "card without number",
            with_payment(json!({"method": "card"})),
        ),
        checkout(
            "unknown payment method",
            with_payment(json!({"method": "bitcoin", "address": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"})),
        ),
        checkout(
            "upi without vpa",
            with_payment(json!({"method": "upi"})),
        ),
        checkout("upi vpa without @", with_payment(upi("no-at-sign"))),
        checkout("missing payment", json!({"shipping_address": shipping_address()})),
        checkout("missing shipping address", json!({"payment": card(CARD_OK)})),
        checkout("address without city", with_address(addr_no_city)),
        checkout("address name with NUL", with_address(addr_nul)),
        checkout("payment as string", json!({"payment": "card", "shipping_address": shipping_address()})),
        case("checkout: 200-char idempotency key", Method::POST, "/api/v1/orders")
            .key("k".repeat(200))
            .json(good_checkout.clone()),
        case("checkout: 129-char idempotency key", Method::POST, "/api/v1/orders")
            .key("k".repeat(129))
            .json(good_checkout.clone()),
        case("checkout: empty idempotency key", Method::POST, "/api/v1/orders")
            .key("")
            .json(good_checkout.clone()),
        case("checkout: missing idempotency key", Method::POST, "/api/v1/orders")
            .json(good_checkout.clone())
            .expect(&[400]),
        case("checkout without token", Method::POST, "/api/v1/orders")
            .auth(Auth::None)
            .key(unique_key())
            .json(good_checkout.clone())
            .expect(&[401]),
        // --- orders / shipments lookups ---
        case("order id not a uuid", Method::GET, "/api/v1/orders/not-a-uuid"),
        case(
            "unknown order",
            Method::GET,
            format!("/api/v1/orders/{}", uuid::Uuid::new_v4()),
        )
        .expect(&[404]),
        case(
            "cancel unknown order",
            Method::POST,
            format!("/api/v1/orders/{}/cancel", uuid::Uuid::new_v4()),
        )
        .json(json!({}))
        .expect(&[404]),
        case(
            "unknown shipment",
            Method::GET,
            format!("/api/v1/shipments/{}", uuid::Uuid::new_v4()),
        )
        .expect(&[404]),
        // --- routing ---
        case("unknown API route", Method::GET, "/api/v1/nope").expect(&[404]),
        case("unknown route", Method::GET, "/definitely/not/here").expect(&[404]),
        case("wrong method on products", Method::DELETE, "/api/v1/products"),
        case("GET on login", Method::GET, "/api/v1/auth/login"),
        // --- oversized bodies ---
        {
            let mut c = post_cart()
                .raw(huge_sku_json.clone(), Some("application/json"))
                .expect(&[413]);
            c.name = "2 MiB cart body".into();
            c
        },
        case("2 MiB registration body", Method::POST, "/api/v1/users")
            .auth(Auth::None)
            .raw(
                format!(
                    r#"{{"email":"{}","password":"{USER_PASSWORD}","name":"{}"}}"#,
                    unique_email(),
                    "x".repeat(two_mib)
                ),
                Some("application/json"),
            )
            .expect(&[413]),
        case("2 MiB checkout body", Method::POST, "/api/v1/orders")
            .key(unique_key())
            .raw(
                format!(
                    r#"{{"payment":{{"method":"card","card_number":"{CARD_OK}"}},"shipping_address":{{"name":"{}","line1":"a","city":"b","postal_code":"1","country":"IN"}}}}"#,
                    "x".repeat(two_mib)
                ),
                Some("application/json"),
            )
            .expect(&[413]),
    ];

    // --- registration: bad emails and odd Unicode names ---
    for bad_email in [
        "not-an-email",
        "",
        "a@",
        "@example.com",
        "a b@example.com",
        "nul\u{0}@example.com",
        "rtl\u{202E}@example.com",
    ] {
        cases.push(
            case(
                format!("register: invalid email {bad_email:?}"),
                Method::POST,
                "/api/v1/users",
            )
            .auth(Auth::None)
            .json(json!({"email": bad_email, "password": USER_PASSWORD, "name": "Bad Email"})),
        );
    }
    cases.push(
        case("register: 300-char email", Method::POST, "/api/v1/users")
            .auth(Auth::None)
            .json(json!({"email": format!("{}@example.com", "a".repeat(300)), "password": USER_PASSWORD, "name": "Long"})),
    );
    cases.push(register("NUL in name", json!("Asha\u{0}Rao")));
    cases.push(register(
        "control chars in name",
        json!("Asha\u{7}\u{1b}[2J"),
    ));
    cases.push(register("RTL override in name", json!("Asha\u{202E}oaR")));
    cases.push(register("10k-char name", json!(long_name)));
    cases.push(register("name as number", json!(42)));

    let mut failures = Vec::new();
    for c in &cases {
        let client = match &c.auth {
            Auth::None | Auth::Header(_) => shop.clone(),
            Auth::User => user.clone(),
            Auth::Admin => admin.clone(),
        };
        if let Body::Raw(bytes, ct) = &c.body {
            if bytes.len() > 1024 * 1024 {
                // Oversized: use a socket that reads the answer while still writing.
                let mut headers = Vec::new();
                if let Auth::Header(h) = &c.auth {
                    headers.push(("Authorization", h.as_str()));
                }
                if let Some(k) = &c.idempotency_key {
                    headers.push(("Idempotency-Key", k.as_str()));
                }
                if let Some(ct) = ct {
                    headers.push(("Content-Type", *ct));
                }
                match client
                    .send_raw(c.method.as_str(), &c.path, &headers, bytes.clone())
                    .await
                {
                    Ok(r) => check_answer(c, &r, &mut failures),
                    Err(e) => failures.push(format!("{}: transport error {e:?}", c.name)),
                }
                continue;
            }
        }
        let mut rb = client.req(c.method.clone(), &c.path);
        if let Auth::Header(h) = &c.auth {
            rb = rb.header("Authorization", h.as_str());
        }
        if let Some(k) = &c.idempotency_key {
            rb = rb.header("Idempotency-Key", k.as_str());
        }
        rb = match &c.body {
            Body::None => rb,
            Body::Json(v) => rb.json(v),
            Body::Raw(bytes, ct) => {
                let rb = rb.body(bytes.clone());
                match ct {
                    Some(ct) => rb.header("Content-Type", *ct),
                    None => rb,
                }
            }
        };
        let r = match client.try_send(rb).await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: transport error {e:?}", c.name));
                continue;
            }
        };
        check_answer(c, &r, &mut failures);
    }

    // Nothing changed.
    let after = snapshot(&shop, &user, &admin, &sku).await;
    if after != before {
        failures.push(format!(
            "state changed by rejected requests:\nbefore: {before:#?}\nafter: {after:#?}"
        ));
    }
    let r = shop.login(&email, USER_PASSWORD).await;
    if r.status != 200 {
        failures.push(format!(
            "the user can no longer log in after the bad requests: {} {}",
            r.status, r.text
        ));
    }
    for e in &rejected_emails {
        let r = shop.register(e, USER_PASSWORD, "Valid Name").await;
        if r.status != 201 {
            failures.push(format!(
                "{e}: a rejected registration must not reserve the email; registering it properly gave {} {}",
                r.status, r.text
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_answer() {
    let server = AgoraProcess::start(ServerOptions::fast());
    let ops = server.admin_port_client();
    ops.get("/healthz").await.expect_status(200, "healthz");
    let ready = poll_until("GET /readyz to answer 200", POLL_TIMEOUT, || async {
        let r = ops.get("/readyz").await;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{} {}", r.status, r.text))
        }
    })
    .await;
    assert_eq!(ready.status, 200);

    let shop = server.client();
    let doc = shop
        .get("/openapi.json")
        .await
        .expect_status(200, "openapi.json");
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "openapi.json must be an OpenAPI 3 document: {}",
        doc.text.chars().take(300).collect::<String>()
    );
    let paths = doc.body["paths"].as_object().expect("openapi paths");
    for p in ["/api/v1/products", "/api/v1/orders", "/api/v1/cart"] {
        assert!(
            paths.contains_key(p),
            "openapi.json lacks path {p}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }

    // The seeded demo catalog.
    let list = shop
        .get("/api/v1/products?per_page=10&page=1")
        .await
        .expect_status(200, "list products");
    let total = list.body["total"].as_u64().expect("total");
    assert!(
        total >= 20,
        "demo catalog must have >= 20 products: {}",
        list.text
    );
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 10, "per_page=10: {}", list.text);
    let page2 = shop
        .get("/api/v1/products?per_page=10&page=2")
        .await
        .expect_status(200, "list products page 2");
    let page2_items = page2.body["items"].as_array().expect("items");
    assert!(!page2_items.is_empty(), "page 2: {}", page2.text);
    for p in page2_items {
        assert!(
            !items.iter().any(|i| i["sku"] == p["sku"]),
            "page 2 repeats {} from page 1",
            p["sku"]
        );
    }
    let category = items[0]["category"].as_str().expect("category").to_string();
    let filtered = shop
        .get(&format!(
            "/api/v1/products?category={category}&per_page=100"
        ))
        .await
        .expect_status(200, "filter by category");
    let filtered_items = filtered.body["items"].as_array().expect("items");
    assert!(!filtered_items.is_empty());
    assert!(
        filtered_items
            .iter()
            .all(|i| i["category"] == category.as_str()),
        "category filter leaked other categories: {}",
        filtered.text
    );

    // A product created now is searchable and shows its stock.
    let admin = server.admin().await;
    let sku = admin.stocked_product(12_300, 7).await;
    // The catalog is a projection: it may lag a little behind the inventory.
    let one = wait_for_product_available(&shop, &sku, 7).await;
    let hit = poll_until(
        &format!("q={sku} to find the product with 7 available"),
        POLL_TIMEOUT,
        || async {
            let found = shop
                .get(&format!("/api/v1/products?q={sku}"))
                .await
                .expect_status(200, "search by sku");
            match found.body["items"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["sku"] == sku.as_str()).cloned())
            {
                Some(hit) if hit["available"] == 7 => Ok(hit),
                _ => Err(found.text),
            }
        },
    )
    .await;
    assert_eq!(hit["price"]["amount_minor"], 12_300, "{hit}");
    assert_eq!(hit["price"]["currency"], "INR", "{hit}");
    assert_eq!(hit["category"], "test", "{hit}");
    assert_eq!(one["description"], "created by agora-tests", "{one}");
    assert_eq!(one["name"], format!("Test product {sku}"), "{one}");

    shop.get("/api/v1/no-such-thing")
        .await
        .expect_status(404, "an unknown path");
    let metrics = ops.get("/metrics").await.expect_status(200, "metrics");
    // Every request is counted and timed by route template, method and status; a path's
    // ids never become label values.
    let series = |route: &str, status: &str| {
        metrics.text.lines().any(|l| {
            l.starts_with("agora_http_request_seconds_count{")
                && l.contains("method=\"GET\"")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(
        series("/api/v1/products/{sku}", "200"),
        "no request count for the product route: {}",
        metrics.text
    );
    assert!(
        series("unmatched", "404"),
        "no count for the unknown path: {}",
        metrics.text
    );
    assert!(
        !metrics.text.contains(&sku),
        "a sku became a label value: {}",
        metrics.text
    );
    assert!(
        metrics.text.contains("agora_http_request_seconds"),
        "no request durations: {}",
        metrics.text
    );
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "metrics content-type: {:?}",
        metrics.content_type
    );
    assert!(
        metrics.text.contains("# TYPE"),
        "metrics must be Prometheus text with at least one metric after traffic: {}",
        metrics.text.chars().take(500).collect::<String>()
    );
}
