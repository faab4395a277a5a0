//! The HTTP ceiling: bare axum answering `GET /api/v1/products/{sku}` with a fixed product
//! JSON from memory. It runs either as a child process of this same executable (like the
//! Agora node: a process of its own, whose CPU can be read) or in this process on its own
//! tokio runtime and threads.

use anyhow::{bail, Context};
use axum::http::header;
use axum::routing::get;
use axum::Router;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Name prefix of the in-process server's threads (their CPU is not the load generator's).
pub const THREAD_PREFIX: &str = "bare-axum";

/// A product answer shaped like Agora's, for when none was read from a node.
pub const SAMPLE_PRODUCT: &str = r#"{"sku":"BENCH-000","name":"Bench novel 0","description":"A novel for load tests","category":"books","price":{"amount_minor":1000,"currency":"INR"},"available":1000000}"#;

/// Where the bare axum server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// A child process (the same layout as the Agora node: fairest).
    Process,
    /// This process, on a runtime of its own.
    InProcess,
}

/// How the server is held.
enum Held {
    /// In this process: the stop signal and the server's thread.
    Thread(Option<oneshot::Sender<()>>, Option<JoinHandle<()>>),
    /// A child process.
    Child(Child),
}

/// A running bare axum server; stopped when dropped.
pub struct BareAxum {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// How it is held.
    held: Held,
}

/// The router answering every product with `body`.
fn app(body: Vec<u8>) -> Router {
    let body = axum::body::Bytes::from(body);
    Router::new().route(
        "/api/v1/products/{sku}",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
}

/// A runtime of `workers` threads named with the prefix.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(format!("{THREAD_PREFIX}-w"))
        .enable_all()
        .build()
}

impl BareAxum {
    /// Starts the server with `workers` runtime threads, answering every product with
    /// `body`; a child process gets `body` through a file in `tmp_root`.
    pub fn start(
        body: Vec<u8>,
        workers: usize,
        placement: Placement,
        tmp_root: &Path,
    ) -> anyhow::Result<Self> {
        match placement {
            Placement::InProcess => Self::in_process(body, workers),
            Placement::Process => Self::process(body, workers, tmp_root),
        }
    }

    /// The server's process id, when it is a child process.
    pub fn pid(&self) -> Option<u32> {
        match &self.held {
            Held::Child(c) => Some(c.id()),
            Held::Thread(..) => None,
        }
    }

    /// Threads of ours that are the server's (their CPU is not the load generator's).
    pub fn our_threads(&self) -> Option<&'static str> {
        match self.held {
            Held::Child(_) => None,
            Held::Thread(..) => Some(THREAD_PREFIX),
        }
    }

    /// Runs the server in this process.
    fn in_process(body: Vec<u8>, workers: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}-main"))
            .spawn(move || {
                let rt = match runtime(workers) {
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
                    let _ = axum::serve(listener, app(body))
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
            held: Held::Thread(Some(stop), Some(thread)),
        })
    }

    /// Runs the server as a child process (`agora-bench bare-axum-server`).
    fn process(body: Vec<u8>, workers: usize, tmp_root: &Path) -> anyhow::Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("agora-bench-body-")
            .tempfile_in(tmp_root)?;
        std::fs::write(file.path(), &body)?;
        let exe = std::env::current_exe().context("cannot locate this executable")?;
        let mut child = Command::new(exe)
            .arg("bare-axum-server")
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--body-file")
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the bare axum process")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the bare axum process did not start: {line:?}");
        };
        Ok(Self {
            base: base.to_string(),
            held: Held::Child(child),
        })
    }
}

impl Drop for BareAxum {
    fn drop(&mut self) {
        match &mut self.held {
            Held::Thread(stop, thread) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Held::Child(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The child process: serves `body_file`'s bytes on 127.0.0.1:0, prints
/// `listening on http://…`, and exits when its stdin closes (its parent went away).
pub fn serve_process(workers: usize, body_file: &Path) -> anyhow::Result<()> {
    let body =
        std::fs::read(body_file).with_context(|| format!("reading {}", body_file.display()))?;
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            std::process::exit(0);
        })?;
    runtime(workers)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app(body)).await?;
        anyhow::Ok(())
    })
}
