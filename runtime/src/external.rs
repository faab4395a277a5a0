//! Executes outbox calls to outside services: the payment gateway, the courier and the
//! notification sinks.

use agora_actors::courier::Courier;
use agora_actors::gateway::{ExternalError, PaymentGateway};
use agora_actors::notify::NotificationSink;
use agora_actors::ExternalCall;
use std::sync::Arc;

/// The outside services a node talks to.
#[derive(Clone)]
pub struct ExternalServices {
    /// The payment gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// The courier.
    pub courier: Arc<dyn Courier>,
    /// Where notifications go.
    pub sink: Arc<dyn NotificationSink>,
}

impl ExternalServices {
    /// Makes one call; an error means "try again later with the same key".
    pub async fn call(&self, call: &ExternalCall) -> Result<(), ExternalError> {
        match call {
            ExternalCall::Charge {
                key,
                order_id,
                method,
                amount,
            } => self.gateway.charge(key, order_id, method, amount).await,
            ExternalCall::Refund {
                key,
                order_id,
                refund_id,
                amount,
            } => self.gateway.refund(key, order_id, refund_id, amount).await,
            ExternalCall::BookShipment {
                key,
                shipment_id,
                city,
                courier,
            } => self.courier.book(key, shipment_id, city, courier).await,
            ExternalCall::Notify {
                key,
                user_id,
                notification,
                message,
            } => self.sink.send(key, user_id, notification, message).await,
        }
    }
}
