//! The outside world a node talks to: the payment gateway (a real one over HTTPS, or the
//! simulated one), the simulated courier, and the notification sinks.

use crate::cards::GatewayChoice;
use crate::sinks::ChannelSinks;
use agora_actors::courier::{SimCourierConfig, SimulatedCourier};
use agora_actors::gateway::{SimGatewayConfig, SimulatedGateway};
use agora_actors::seams::RandomSource;
use agora_cluster::router::Router;
use agora_cluster_config::NodeSettings;
use agora_runtime::callbacks::RegionCallbacks;
use agora_runtime::external::ExternalServices;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The services outside the shop, their callbacks routed to entities through `router`.
pub(super) fn outside_world(
    settings: &NodeSettings,
    (payment_gateway, gateway_ledger): (GatewayChoice, Arc<agora_actors::gateway::GatewayLedger>),
    courier_bookings: Arc<agora_actors::courier::CourierBookings>,
    rng: Arc<dyn RandomSource>,
    router: &Router,
    sink: Option<Arc<dyn agora_actors::notify::NotificationSink>>,
) -> anyhow::Result<ExternalServices> {
    let callbacks = Arc::new(RegionCallbacks {
        region: Arc::new(router.clone()),
    });
    let gateway_cfg = SimGatewayConfig {
        min_latency: Duration::from_millis(settings.gateway_min_latency_ms),
        max_latency: Duration::from_millis(settings.gateway_max_latency_ms),
        ..SimGatewayConfig::default()
    };
    let courier_cfg = SimCourierConfig {
        legs: [Duration::from_millis(settings.courier_leg_ms); 4],
        ..SimCourierConfig::default()
    };
    let payments: Arc<dyn agora_actors::gateway::PaymentGateway> = match payment_gateway {
        GatewayChoice::Http(http) => http,
        GatewayChoice::Sim(vault) => Arc::new(SimulatedGateway::new(
            gateway_cfg,
            rng.clone(),
            callbacks.clone(),
            (vault, gateway_ledger),
        )),
    };
    Ok(ExternalServices {
        gateway: payments,
        courier: Arc::new(
            SimulatedCourier::new(courier_cfg, rng.clone(), callbacks)
                .with_bookings(courier_bookings),
        ),
        sink: match sink {
            Some(sink) => sink,
            None => Arc::new(
                ChannelSinks::from_settings(
                    &settings.notifications,
                    settings.data_dir.join("notifications.jsonl"),
                )
                .context("cannot set up the notification channels")?,
            ),
        },
    })
}
