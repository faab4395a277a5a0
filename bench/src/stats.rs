//! What a load run records: per-operation latency histograms and answers by status, a
//! one-second timeline (for the chart), and the acknowledged orders (for the check after).
//! Only answers that complete inside the measured window count in the totals.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed answers whose bodies are kept.
const MAX_SAMPLES: usize = 10;

/// Highest latency recorded, in µs (longer ones are clamped).
const MAX_US: u64 = 120_000_000;

/// An operation of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Op {
    /// `POST /api/v1/cart/items`.
    AddToCart,
    /// `POST /api/v1/orders` until its 201.
    Checkout,
    /// An open-loop shopper visit: from its scheduled start, through add-to-cart, to the 201.
    Visit,
    /// `GET /api/v1/products/{sku}`.
    Product,
    /// `GET /api/v1/products?q=..&category=..`.
    Listing,
}

impl Op {
    /// Whether it is one HTTP answer (a visit is made of two).
    pub fn is_answer(self) -> bool {
        self != Op::Visit
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::AddToCart => "add_to_cart",
            Op::Checkout => "checkout_to_201",
            Op::Visit => "visit_to_201",
            Op::Product => "product_read",
            Op::Listing => "listing_search",
        }
    }
}

/// A new latency histogram in µs with `sigfig` (≤ 5) significant digits.
pub fn histogram(sigfig: u8) -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).ok()
}

/// The time frame of a run: start of the warm-up, start and end of the measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Warm-up starts.
    pub t0: Instant,
    /// Measurement starts.
    pub from: Instant,
    /// Measurement ends.
    pub until: Instant,
}

impl Window {
    /// A window starting now: `warmup` then `duration`.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            from: t0 + warmup,
            until: t0 + warmup + duration,
        }
    }

    /// Length of the measured part in seconds.
    pub fn measured_secs(&self) -> f64 {
        self.until.duration_since(self.from).as_secs_f64()
    }
}

/// Latency percentiles, in `unit`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// "ms" or "us".
    pub unit: &'static str,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of a histogram of µs, in ms.
    pub fn ms(h: &Histogram<u64>) -> Self {
        Self::scaled(h, 1000.0, "ms")
    }

    /// Percentiles of a histogram, each value divided by `divisor`, labelled `unit`.
    pub fn scaled(h: &Histogram<u64>, divisor: f64, unit: &'static str) -> Self {
        let q = |p: f64| h.value_at_quantile(p) as f64 / divisor;
        Self {
            unit,
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / divisor,
        }
    }
}

/// One operation's results.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    /// Operation name.
    pub op: &'static str,
    /// 2xx answers in the window.
    pub ok: u64,
    /// 2xx answers per second.
    pub per_s: f64,
    /// Latency of the 2xx answers.
    pub latency: Percentiles,
    /// Other answers by status ("transport" for no answer).
    pub non_2xx: BTreeMap<String, u64>,
}

/// One second of the run, for the chart.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the warm-up started.
    pub t_s: u64,
    /// Seconds of the run this bucket covers (less than 1 for the last one).
    pub span_s: f64,
    /// Answers (any status) in this second.
    pub requests: u64,
    /// Answers per second (requests ÷ span).
    pub rate: f64,
    /// Non-2xx answers and transport errors in this second.
    pub errors: u64,
    /// Median latency of the main operation, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of the main operation, ms.
    pub p99_ms: Option<f64>,
    /// Whether this second is warm-up.
    pub warmup: bool,
}

/// An order acknowledged with 201.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    /// Its id.
    pub id: String,
    /// Wall clock (ms since the epoch) when the checkout was sent.
    pub sent_wall_ms: u64,
    /// Whether the 201 came inside the measured window.
    pub in_window: bool,
}

/// One operation's answers in the window.
#[derive(Debug)]
struct OpStats {
    /// Latency of the 2xx answers, µs.
    hist: Option<Histogram<u64>>,
    /// 2xx answers.
    ok: u64,
    /// Other answers by status (0: transport error).
    statuses: BTreeMap<u16, u64>,
}

/// One second of the timeline.
#[derive(Debug, Default)]
struct Bucket {
    /// Answers.
    requests: u64,
    /// Failed answers.
    errors: u64,
    /// Latency of the main operation's 2xx answers, µs.
    hist: Option<Histogram<u64>>,
}

/// The recorder's state behind its lock.
#[derive(Debug)]
struct Inner {
    /// Per operation.
    ops: BTreeMap<Op, OpStats>,
    /// Per second since the warm-up started.
    timeline: Vec<Bucket>,
    /// Acknowledged orders.
    orders: Vec<PlacedOrder>,
    /// Open-loop arrivals not sent.
    dropped: u64,
    /// Non-2xx answers during the warm-up or after the window, by status.
    outside: BTreeMap<u16, u64>,
    /// The first few failed answers: operation, status, start of the body.
    samples: Vec<String>,
    /// Checkouts answered 422 empty-cart right after a successful add-to-cart.
    cart_races: u64,
}

/// The recorder shared by every client task of a run.
#[derive(Debug)]
pub struct Recorder {
    /// The run's time frame.
    window: Window,
    /// The operation the timeline's latency follows.
    primary: Op,
    /// Everything recorded.
    inner: Mutex<Inner>,
    /// Answers so far (any status, warm-up included), for the progress line.
    pub answered: AtomicU64,
    /// Failed answers so far, for the progress line.
    pub failed: AtomicU64,
}

/// Everything a run recorded, summarized.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Per-operation results.
    pub ops: Vec<OpSummary>,
    /// 2xx answers in the window, all requests (a visit's requests counted once each).
    pub ok: u64,
    /// 2xx answers per second, all requests.
    pub ok_per_s: f64,
    /// Non-2xx answers in the window by status ("transport" for no answer).
    pub non_2xx: BTreeMap<String, u64>,
    /// Non-2xx answers during the warm-up or after the window (not in the totals, but
    /// still failures), by status.
    pub non_2xx_outside_window: BTreeMap<String, u64>,
    /// Open-loop arrivals that could not be sent (client at its in-flight cap).
    pub dropped_arrivals: u64,
    /// The first few failed answers (operation, status, body).
    pub failure_samples: Vec<String>,
    /// Checkouts answered 422 empty-cart right after a successful add-to-cart (anywhere in
    /// the run): the cart race, see `Recorder::cart_race`.
    pub cart_races: u64,
    /// The chart's data.
    pub timeline: Vec<TimelinePoint>,
}

/// A status as a report key.
fn status_key(s: u16) -> String {
    if s == 0 {
        "transport".into()
    } else {
        s.to_string()
    }
}

impl Recorder {
    /// A recorder for `window`; the timeline follows `primary`'s latency.
    pub fn new(window: Window, primary: Op) -> Self {
        Self {
            window,
            primary,
            inner: Mutex::new(Inner {
                ops: BTreeMap::new(),
                timeline: Vec::new(),
                orders: Vec::new(),
                dropped: 0,
                outside: BTreeMap::new(),
                samples: Vec::new(),
                cart_races: 0,
            }),
            answered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The run's window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Records an answer to `op` started at `started` with `status` (0: transport error).
    pub fn record(&self, op: Op, started: Instant, status: u16) {
        let now = Instant::now();
        let ok = (200..300).contains(&status);
        // A visit is not an answer of its own: its requests are recorded already.
        let answer = op.is_answer();
        if answer {
            self.answered.fetch_add(1, Ordering::Relaxed);
            if !ok {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if now >= self.window.until {
            if !ok && answer {
                if let Ok(mut inner) = self.inner.lock() {
                    *inner.outside.entry(status).or_default() += 1;
                }
            }
            return;
        }
        let us = now
            .duration_since(started)
            .as_micros()
            .clamp(1, MAX_US as u128) as u64;
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let second = now.duration_since(self.window.t0).as_secs() as usize;
        if inner.timeline.len() <= second {
            inner.timeline.resize_with(second + 1, Bucket::default);
        }
        let bucket = &mut inner.timeline[second];
        if answer {
            bucket.requests += 1;
            if !ok {
                bucket.errors += 1;
            }
        }
        if ok && op == self.primary {
            if bucket.hist.is_none() {
                bucket.hist = histogram(2);
            }
            if let Some(h) = bucket.hist.as_mut() {
                let _ = h.record(us);
            }
        }
        if now < self.window.from {
            if !ok && answer {
                *inner.outside.entry(status).or_default() += 1;
            }
            return;
        }
        let stats = inner.ops.entry(op).or_insert_with(|| OpStats {
            hist: histogram(3),
            ok: 0,
            statuses: BTreeMap::new(),
        });
        if ok {
            stats.ok += 1;
            if let Some(h) = stats.hist.as_mut() {
                let _ = h.record(us);
            }
        } else {
            *stats.statuses.entry(status).or_default() += 1;
        }
    }

    /// Records an acknowledged order.
    pub fn order(&self, id: String, sent_wall_ms: u64) {
        let now = Instant::now();
        let in_window = now >= self.window.from && now < self.window.until;
        if let Ok(mut inner) = self.inner.lock() {
            inner.orders.push(PlacedOrder {
                id,
                sent_wall_ms,
                in_window,
            });
        }
    }

    /// Keeps the body of a failed answer (the first few only), for the report.
    pub fn sample(&self, op: Op, status: u16, body: &[u8]) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.samples.len() < MAX_SAMPLES {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                inner
                    .samples
                    .push(format!("{} {}: {text}", op.name(), status_key(status)));
            }
        }
    }

    /// Counts a checkout answered 422 empty-cart right after its add-to-cart was answered
    /// 200: the previous order's asynchronous `CheckedOut` reached the cart after this add
    /// and took the new line out (an Agora race, reported apart from other failures).
    pub fn cart_race(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut inner) = self.inner.lock() {
            inner.cart_races += 1;
        }
    }

    /// Counts an open-loop arrival that could not be sent.
    pub fn dropped(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.dropped += 1;
        }
    }

    /// The acknowledged orders so far.
    pub fn orders(&self) -> Vec<PlacedOrder> {
        self.inner
            .lock()
            .map(|i| i.orders.clone())
            .unwrap_or_default()
    }

    /// 2xx answers of `op` in the window.
    pub fn ok_of(&self, op: Op) -> u64 {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.ops.get(&op).map(|s| s.ok))
            .unwrap_or(0)
    }

    /// The results so far.
    pub fn summary(&self) -> Summary {
        let secs = self.window.measured_secs().max(1e-9);
        let warm_secs = self
            .window
            .from
            .duration_since(self.window.t0)
            .as_secs_f64();
        let Ok(inner) = self.inner.lock() else {
            return Summary {
                ops: Vec::new(),
                ok: 0,
                ok_per_s: 0.0,
                non_2xx: BTreeMap::new(),
                non_2xx_outside_window: BTreeMap::new(),
                dropped_arrivals: 0,
                failure_samples: Vec::new(),
                cart_races: 0,
                timeline: Vec::new(),
            };
        };
        let mut non_2xx = BTreeMap::new();
        let mut ok = 0;
        let ops = inner
            .ops
            .iter()
            .map(|(op, s)| {
                if op.is_answer() {
                    ok += s.ok;
                }
                let by_status: BTreeMap<String, u64> = s
                    .statuses
                    .iter()
                    .map(|(k, v)| (status_key(*k), *v))
                    .collect();
                if op.is_answer() {
                    for (k, v) in &by_status {
                        *non_2xx.entry(k.clone()).or_insert(0) += v;
                    }
                }
                OpSummary {
                    op: op.name(),
                    ok: s.ok,
                    per_s: s.ok as f64 / secs,
                    latency: s.hist.as_ref().map(Percentiles::ms).unwrap_or_default(),
                    non_2xx: by_status,
                }
            })
            .collect();
        let total_secs = self
            .window
            .until
            .duration_since(self.window.t0)
            .as_secs_f64();
        let timeline = inner
            .timeline
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let span_s = (total_secs - i as f64).clamp(1e-3, 1.0);
                (i, b, span_s)
            })
            .map(|(i, b, span_s)| TimelinePoint {
                t_s: i as u64,
                span_s,
                requests: b.requests,
                rate: b.requests as f64 / span_s,
                errors: b.errors,
                p50_ms: b
                    .hist
                    .as_ref()
                    .map(|h| h.value_at_quantile(0.5) as f64 / 1000.0),
                p99_ms: b
                    .hist
                    .as_ref()
                    .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0),
                warmup: (i as f64) < warm_secs,
            })
            .collect();
        Summary {
            ops,
            ok,
            ok_per_s: ok as f64 / secs,
            non_2xx,
            non_2xx_outside_window: inner
                .outside
                .iter()
                .map(|(k, v)| (status_key(*k), *v))
                .collect(),
            dropped_arrivals: inner.dropped,
            failure_samples: inner.samples.clone(),
            cart_races: inner.cart_races,
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_window_and_buckets_by_second() {
        let w = Window::starting_now(Duration::ZERO, Duration::from_secs(60));
        let r = Recorder::new(w, Op::Product);
        let t = Instant::now();
        r.record(Op::Product, t, 200);
        r.record(Op::Product, t, 200);
        r.record(Op::Product, t, 404);
        r.record(Op::Listing, t, 0);
        let s = r.summary();
        assert_eq!(s.ok, 2);
        assert_eq!(s.non_2xx.get("404"), Some(&1));
        assert_eq!(s.non_2xx.get("transport"), Some(&1));
        assert_eq!(s.timeline[0].requests, 4);
        assert_eq!(s.timeline[0].errors, 2);
        assert!(s.timeline[0].p50_ms.is_some());
    }

    #[test]
    fn a_visit_is_not_an_answer_of_its_own() {
        let w = Window::starting_now(Duration::ZERO, Duration::from_secs(60));
        let r = Recorder::new(w, Op::Checkout);
        let t = Instant::now();
        r.record(Op::AddToCart, t, 200);
        r.record(Op::Checkout, t, 201);
        r.record(Op::Visit, t, 201);
        let s = r.summary();
        assert_eq!(s.ok, 2);
        assert_eq!(s.timeline[0].requests, 2);
        assert_eq!(r.answered.load(Ordering::Relaxed), 2);
        assert!(s.ops.iter().any(|o| o.op == "visit_to_201" && o.ok == 1));
    }

    #[test]
    fn warm_up_answers_are_not_counted() {
        let w = Window::starting_now(Duration::from_secs(60), Duration::from_secs(60));
        let r = Recorder::new(w, Op::Product);
        r.record(Op::Product, Instant::now(), 200);
        let s = r.summary();
        assert_eq!(s.ok, 0);
        assert!(s.timeline[0].warmup);
    }
}
