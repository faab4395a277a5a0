//! The courier seen from Agora, and a simulated one: it books a pickup after a latency
//! (sometimes the booking call times out) and answers with a tracking number and the
//! duration of each leg; the Shipment entity then moves along on durable timers.
//!
//! Test addresses, like the test cards: a parcel to the city `Nowhere` fails every delivery
//! attempt (and is returned), one to `Retryville` fails the first attempt only.

use crate::command::Command;
use crate::gateway::{CallbackSink, ExternalError};
use crate::ids::{EntityKind, EntityRef};
use crate::seams::RandomSource;
use crate::shipment::ShipmentCommand;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A courier.
#[async_trait]
pub trait Courier: Send + Sync + 'static {
    /// Books a pickup with `courier`; the booking comes later as `ShipmentCommand::Booked`.
    async fn book(
        &self,
        key: &str,
        shipment_id: &str,
        city: &str,
        courier: &str,
    ) -> Result<(), ExternalError>;
}

/// How many delivery attempts fail for a parcel to `city` (the documented test cities), or
/// `None` when chance decides.
pub fn failing_attempts_for(city: &str) -> Option<u32> {
    match city.trim().to_lowercase().as_str() {
        "nowhere" => Some(crate::shipment::MAX_DELIVERY_ATTEMPTS),
        "retryville" => Some(1),
        _ => None,
    }
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
    /// Chance (per million) that a delivery attempt fails (outside the test cities).
    pub failed_attempt_ppm: u32,
}

impl Default for SimCourierConfig {
    fn default() -> Self {
        Self {
            booking_latency: Duration::from_millis(50),
            legs: [Duration::from_secs(2); 4],
            timeout_ppm: 20_000,
            failed_attempt_ppm: 0,
        }
    }
}

/// A pickup the courier booked: its idempotency key and the shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourierBooking {
    /// The booking call's idempotency key.
    pub key: String,
    /// The shipment picked up.
    pub shipment_id: String,
}

/// The courier's books: every pickup booked, in order (a repeated call under one key books
/// nothing new at a real courier, and is recorded once here).
#[derive(Debug, Default)]
pub struct CourierBookings(Mutex<Vec<CourierBooking>>);

impl CourierBookings {
    /// Records a booking (once per key).
    fn record(&self, key: &str, shipment_id: &str) {
        let mut books = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !books.iter().any(|b| b.key == key) {
            books.push(CourierBooking {
                key: key.to_string(),
                shipment_id: shipment_id.to_string(),
            });
        }
    }

    /// Every booking so far.
    pub fn all(&self) -> Vec<CourierBooking> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A courier simulated in process.
pub struct SimulatedCourier {
    config: SimCourierConfig,
    rng: Arc<dyn RandomSource>,
    callbacks: Arc<dyn CallbackSink>,
    bookings: Arc<CourierBookings>,
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
            bookings: Arc::default(),
        }
    }

    /// The same courier keeping its books in `bookings` (shared across a simulated
    /// cluster's nodes and restarts).
    pub fn with_bookings(self, bookings: Arc<CourierBookings>) -> Self {
        Self { bookings, ..self }
    }
}

#[async_trait]
impl Courier for SimulatedCourier {
    async fn book(
        &self,
        key: &str,
        shipment_id: &str,
        city: &str,
        _courier: &str,
    ) -> Result<(), ExternalError> {
        if self.rng.next_u64() % 1_000_000 < u64::from(self.config.timeout_ppm) {
            return Err(ExternalError::Timeout);
        }
        // The plan is a function of the key (and the city): a repeated booking is the same.
        let failing_attempts = failing_attempts_for(city).unwrap_or_else(|| {
            let mut n = 0;
            let mut h = xxhash_rust::xxh3::xxh3_64(format!("{key}:attempts").as_bytes());
            while n < crate::shipment::MAX_DELIVERY_ATTEMPTS
                && h % 1_000_000 < u64::from(self.config.failed_attempt_ppm)
            {
                n += 1;
                h = xxhash_rust::xxh3::xxh3_64(&h.to_le_bytes());
            }
            n
        });
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
        let cmd = Command::Shipment(ShipmentCommand::Booked {
            tracking,
            legs_ms,
            failing_attempts,
        });
        let to = EntityRef::new(EntityKind::Shipment, shipment_id);
        let callbacks = self.callbacks.clone();
        let delay = self.config.booking_latency;
        let msg_id = format!("courier:{key}");
        self.bookings.record(key, shipment_id);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            callbacks.deliver(to, msg_id, cmd);
        });
        Ok(())
    }
}
