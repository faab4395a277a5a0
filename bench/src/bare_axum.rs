//! The HTTP ceiling: bare axum answering `GET /api/v1/products/{sku}` with a fixed product
//! JSON from memory, in this process but on its own tokio runtime and threads.

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Name prefix of the server's threads (their CPU is not the load generator's).
pub const THREAD_PREFIX: &str = "bare-axum";

/// A product answer shaped like Agora's, for when none was read from a node.
pub const SAMPLE_PRODUCT: &str = r#"{"sku":"BENCH-000","name":"Bench novel 0","description":"A novel for load tests","category":"books","price":{"amount_minor":1000,"currency":"INR"},"available":1000000}"#;

/// A running bare axum server; stopped when dropped.
pub struct BareAxum {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Tells the server to stop.
    stop: Option<oneshot::Sender<()>>,
    /// The server's thread.
    thread: Option<JoinHandle<()>>,
}

impl BareAxum {
    /// Starts the server with `workers` runtime threads, answering every product with `body`.
    pub fn start(body: Vec<u8>, workers: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}-main"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name(format!("{THREAD_PREFIX}-w"))
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr().map_err(Into::into));
                    let body = axum::body::Bytes::from(body);
                    let app = Router::new().route(
                        "/api/v1/products/{sku}",
                        get(move || {
                            let body = body.clone();
                            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
                        }),
                    );
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        let addr = ready_rx
            .recv()
            .context("the bare axum thread ended before binding")??;
        Ok(Self {
            base: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for BareAxum {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
