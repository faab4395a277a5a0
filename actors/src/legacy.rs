//! Where stored values hold a payment method, so that the format-4 migration can replace
//! format 3's raw card numbers (`Method::LegacyCardNumber`) with card references.

use crate::command::Command;
use crate::host::EntityState;
use crate::message::{Body, ExternalCall, OutboxMessage};
use crate::order::OrderCommand;
use crate::payment::{Method, PaymentCommand};

/// The payment method an entity's state holds, if any (an order's placement, a payment's).
pub fn state_method_mut(state: &mut EntityState) -> Option<&mut Method> {
    match state {
        EntityState::Order(o) => o.placement.as_mut().map(|p| &mut p.method),
        EntityState::Payment(p) => p.method.as_mut(),
        _ => None,
    }
}

/// The payment method a message carries, if any (a placement, an authorisation, a charge).
pub fn message_method_mut(message: &mut OutboxMessage) -> Option<&mut Method> {
    match &mut message.body {
        Body::Command(Command::Order(OrderCommand::Place(p))) => Some(&mut p.method),
        Body::Command(Command::Payment(PaymentCommand::Authorize { method, .. })) => Some(method),
        Body::External(ExternalCall::Charge { method, .. }) => Some(method),
        _ => None,
    }
}
