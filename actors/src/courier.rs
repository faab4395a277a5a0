//! The courier seen from Agora, and a simulated one: it books a pickup after a latency
//! (sometimes the booking call times out) and answers with a tracking number and the
//! duration of each leg; the Shipment entity then moves along on durable timers.

use crate::command::Command;
use crate::gateway::{CallbackSink, ExternalError};
use crate::ids::{EntityKind, EntityRef};
use crate::seams::RandomSource;
use crate::shipment::ShipmentCommand;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// A courier.
#[async_trait]
pub trait Courier: Send + Sync + 'static {
    /// Books a pickup; the booking comes later as `ShipmentCommand::Booked`.
    async fn book(&self, key: &str, shipment_id: &str, city: &str) -> Result<(), ExternalError>;
}

/// Behaviour of the simulated courier.
#[derive(Debug, Clone)]
pub struct SimCourierConfig {
    /// Delay before the booking answer.
    pub booking_latency: Duration,
    /// Duration of each leg: to PICKED_UP, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED.
    pub legs: [Duration; 4],
    /// Chance (per million) that a booking call times out (the caller retries).
    pub timeout_ppm: u32,
}

impl Default for SimCourierConfig {
    fn default() -> Self {
        Self {
            booking_latency: Duration::from_millis(50),
            legs: [Duration::from_secs(2); 4],
            timeout_ppm: 20_000,
        }
    }
}

/// A courier simulated in process.
pub struct SimulatedCourier {
    config: SimCourierConfig,
    rng: Arc<dyn RandomSource>,
    callbacks: Arc<dyn CallbackSink>,
}

impl SimulatedCourier {
    /// A courier that answers through `callbacks`.
    pub fn new(
        config: SimCourierConfig,
        rng: Arc<dyn RandomSource>,
        callbacks: Arc<dyn CallbackSink>,
    ) -> Self {
        Self {
            config,
            rng,
            callbacks,
        }
    }
}

#[async_trait]
impl Courier for SimulatedCourier {
    async fn book(&self, key: &str, shipment_id: &str, _city: &str) -> Result<(), ExternalError> {
        if self.rng.next_u64() % 1_000_000 < u64::from(self.config.timeout_ppm) {
            return Err(ExternalError::Timeout);
        }
        // The tracking number is a function of the key: a repeated booking is the same one.
        let tracking = format!(
            "TRK{:012}",
            xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % 1_000_000_000_000
        );
        let legs_ms = self
            .config
            .legs
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        let cmd = Command::Shipment(ShipmentCommand::Booked { tracking, legs_ms });
        let to = EntityRef::new(EntityKind::Shipment, shipment_id);
        let callbacks = self.callbacks.clone();
        let delay = self.config.booking_latency;
        let msg_id = format!("courier:{key}");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            callbacks.deliver(to, msg_id, cmd);
        });
        Ok(())
    }
}
