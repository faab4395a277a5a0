//! The node's two listeners: the shop API and the admin endpoint, each behind its own
//! connection bounds (or handed to the simulator's network).

use super::{Serving, ADMIN_CONNECTIONS};
use agora_cluster_config::NodeSettings;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Where the two APIs listen, and their server tasks.
pub(super) type Listening = (SocketAddr, SocketAddr, Vec<tokio::task::JoinHandle<()>>);

/// Binds and serves the shop API and the admin endpoint as `serving` says; tells the payment
/// client where its webhook is reachable.
pub(super) async fn open(
    serving: Serving,
    settings: &NodeSettings,
    (shop_api, admin_api): (axum::Router, axum::Router),
    webhook_url: &Arc<std::sync::OnceLock<String>>,
    shutdown_rx: watch::Receiver<bool>,
) -> anyhow::Result<Listening> {
    Ok(match serving {
        Serving::Tcp => {
            let http = tokio::net::TcpListener::bind(settings.http_addr)
                .await
                .with_context(|| format!("cannot bind the shop API on {}", settings.http_addr))?;
            let admin = tokio::net::TcpListener::bind(settings.admin_addr)
                .await
                .with_context(|| {
                    format!("cannot bind the admin endpoint on {}", settings.admin_addr)
                })?;
            let addrs = (http.local_addr()?, admin.local_addr()?);
            let mut reachable = addrs.0;
            if reachable.ip().is_unspecified() {
                reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let _ = webhook_url.set(format!(
                "http://{reachable}{}",
                crate::payment_http::WEBHOOK_PATH
            ));
            let http = crate::listener::BoundedListener::new(http, settings.connections);
            // The admin endpoint has its own, smaller bounds: a flood of the shop's port
            // never reaches them.
            let admin = crate::listener::BoundedListener::new(admin, ADMIN_CONNECTIONS);
            let servers = vec![
                serve(http, shop_api, shutdown_rx.clone()),
                serve(admin, admin_api, shutdown_rx),
            ];
            (addrs.0, addrs.1, servers)
        }
        Serving::Handover(take) => {
            take(shop_api, admin_api);
            (settings.http_addr, settings.admin_addr, Vec::new())
        }
    })
}

/// Serves `app` on `listener` until `shutdown`, letting requests in progress finish.
fn serve(
    listener: crate::listener::BoundedListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        use axum::serve::ListenerExt;
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        // `tap_io` (a no-op here) is what gives a custom listener's connections their
        // client address (`ConnectInfo`), which the rate limits key on.
        let listener = listener.tap_io(|_: &mut crate::listener::BoundedStream| {});
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "server failed");
        }
    })
}
