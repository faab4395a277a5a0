//! `agora-bench`: drives a running Agora node with virtual shoppers that add to cart and
//! check out, then reports throughput, latency to 201, non-2xx answers and, from the node's
//! metrics, durable commits per second and fsyncs (commits) per order.

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Command-line options.
#[derive(Parser, Clone)]
#[command(about)]
struct Args {
    /// Base URL of the shop API (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    url: String,
    /// Base URL of the admin endpoint (for /metrics).
    #[arg(long)]
    admin_url: String,
    /// The admin password (AGORA_ADMIN_PASSWORD of the node).
    #[arg(long, env = "AGORA_ADMIN_PASSWORD")]
    admin_password: String,
    /// Virtual shoppers.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Timed duration in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up in seconds (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Value,
    key: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut rb = c.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(k) = key {
        rb = rb.header("Idempotency-Key", k);
    }
    let r = rb.send().await?;
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, v))
}

async fn login(
    c: &reqwest::Client,
    api: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (s, v) = post(
        c,
        &format!("{api}/auth/login"),
        None,
        json!({"email": email, "password": password}),
        None,
    )
    .await?;
    if s != 200 {
        bail!("login of {email} answered {s}: {v}");
    }
    Ok(v["access_token"]
        .as_str()
        .context("no access_token")?
        .to_string())
}

async fn metric(c: &reqwest::Client, admin: &str, name: &str) -> anyhow::Result<f64> {
    let text = c
        .get(format!("{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[derive(Default)]
struct Tally {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    latency_us: Option<Histogram<u64>>,
    order_ids: Vec<String>,
}

async fn shopper(
    c: reqwest::Client,
    api: String,
    token: String,
    sku: String,
    user: usize,
    until_warm: Instant,
    until: Instant,
) -> Tally {
    let mut t = Tally {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    };
    let body = json!({"payment": {"method": "card", "card_number": "4242424242424242"},
        "shipping_address": {"name": "Bench", "line1": "1 Load St", "city": "Pune", "postal_code": "411001", "country": "IN"}});
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let measured = Instant::now() >= until_warm;
        let add = post(
            &c,
            &format!("{api}/cart/items"),
            Some(&token),
            json!({"sku": sku, "quantity": 1}),
            None,
        )
        .await;
        if !matches!(add, Ok((200, _))) {
            t.errors += 1;
            continue;
        }
        let key = format!("bench-{user}-{i}");
        let start = Instant::now();
        match post(
            &c,
            &format!("{api}/orders"),
            Some(&token),
            body.clone(),
            Some(&key),
        )
        .await
        {
            Ok((201, v)) if measured => {
                t.ok += 1;
                if let Some(h) = t.latency_us.as_mut() {
                    let _ = h.record(start.elapsed().as_micros() as u64);
                }
                if let Some(id) = v["order_id"].as_str() {
                    t.order_ids.push(id.to_string());
                }
            }
            Ok((201, _)) => {}
            Ok(_) if measured => t.non_2xx += 1,
            Err(_) if measured => t.errors += 1,
            _ => {}
        }
    }
    t
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let api = format!("{}/api/v1", a.url.trim_end_matches('/'));
    let admin = a.admin_url.trim_end_matches('/').to_string();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(a.users * 2)
        .build()?;
    let admin_token = login(&c, &api, "admin@agora.local", &a.admin_password).await?;
    let run = std::process::id();
    let sku = format!("BENCH-{run}");
    let product = json!({"sku": sku, "name": "Bench item", "description": "load", "category": "bench", "price": {"amount_minor": 1000, "currency": "INR"}});
    let (s, v) = post(
        &c,
        &format!("{api}/products"),
        Some(&admin_token),
        product,
        None,
    )
    .await?;
    if s != 201 {
        bail!("creating the bench product answered {s}: {v}");
    }
    let (s, v) = post(
        &c,
        &format!("{api}/inventory/{sku}/receive"),
        Some(&admin_token),
        json!({"quantity": 1_000_000}),
        None,
    )
    .await?;
    if s != 200 {
        bail!("receiving stock answered {s}: {v}");
    }
    eprintln!("registering {} shoppers…", a.users);
    let mut tokens = Vec::new();
    for u in 0..a.users {
        let email = format!("bench-{run}-{u}@example.com");
        post(
            &c,
            &format!("{api}/users"),
            None,
            json!({"email": email, "password": "bench-password", "name": "Bench"}),
            None,
        )
        .await?;
        tokens.push(login(&c, &api, &email, "bench-password").await?);
    }
    let until_warm = Instant::now() + Duration::from_secs(a.warmup);
    let until = until_warm + Duration::from_secs(a.duration);
    tokio::time::sleep_until(until_warm.into()).await;
    let commits0 = metric(&c, &admin, "agora_store_commits_total").await?;
    let writes0 = metric(&c, &admin, "agora_entity_writes_total").await?;
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(u, token)| {
            tokio::spawn(shopper(
                c.clone(),
                api.clone(),
                token,
                sku.clone(),
                u,
                until_warm,
                until,
            ))
        })
        .collect();
    let mut total = Tally {
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    };
    for t in tasks {
        let r = t.await?;
        total.ok += r.ok;
        total.non_2xx += r.non_2xx;
        total.errors += r.errors;
        if let (Some(h), Some(x)) = (total.latency_us.as_mut(), r.latency_us.as_ref()) {
            h.add(x)?;
        }
        total.order_ids.extend(r.order_ids);
    }
    let elapsed = started
        .elapsed()
        .as_secs_f64()
        .min(a.duration as f64 + a.warmup as f64);
    let commits = metric(&c, &admin, "agora_store_commits_total").await? - commits0;
    let writes = metric(&c, &admin, "agora_entity_writes_total").await? - writes0;
    // Correctness inside the benchmark: every acknowledged order must be readable.
    let h = total.latency_us.take().context("histogram")?;
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "checkouts acknowledged (201): {} in {:.1} s = {:.0}/s",
        total.ok,
        elapsed,
        total.ok as f64 / elapsed
    );
    println!(
        "non-2xx: {}  transport errors: {}",
        total.non_2xx, total.errors
    );
    println!(
        "time to 201 ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        h.max() as f64 / 1000.0
    );
    println!(
        "durable commits (fsyncs): {:.0} = {:.0}/s; entity writes: {:.0} = {:.0}/s",
        commits,
        commits / elapsed,
        writes,
        writes / elapsed
    );
    println!(
        "fsyncs per acknowledged order (incl. saga steps in flight): {:.3}",
        commits / total.ok.max(1) as f64
    );
    println!(
        "entity writes per order: {:.2}",
        writes / total.ok.max(1) as f64
    );
    let mut missing = 0;
    for id in total.order_ids.iter().take(200) {
        let r = c
            .get(format!("{api}/orders/{id}"))
            .bearer_auth(&admin_token)
            .send()
            .await?;
        if r.status().as_u16() != 200 {
            missing += 1;
        }
    }
    println!(
        "acknowledged orders checked: {} (missing: {missing})",
        total.order_ids.len().min(200)
    );
    if missing > 0 {
        bail!("{missing} acknowledged orders are missing");
    }
    Ok(())
}
