//! Domain errors: what an entity answers when a command cannot take effect. A command that
//! fails changes nothing.

use serde::{Deserialize, Serialize};

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    /// The entity does not exist (or the caller may not see it).
    #[error("{0} not found")]
    NotFound(String),
    /// The entity already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A field's value is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not enough stock to reserve.
    #[error("out of stock: {sku} (requested {requested}, available {available})")]
    OutOfStock {
        /// The SKU.
        sku: String,
        /// Quantity asked for.
        requested: u64,
        /// Quantity available when asked.
        available: u64,
    },
    /// The command does not fit the entity's current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The entity is no longer at the version the caller read (an HTTP `If-Match`).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The same idempotency key was used with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    /// The command was sent to the wrong kind of entity (a routing bug, not user input).
    #[error("command {command} does not apply to {kind}")]
    WrongKind {
        /// Kind of the target.
        kind: String,
        /// Name of the command.
        command: String,
    },
    /// The credentials do not match.
    #[error("invalid credentials")]
    BadCredentials,
    /// Too many failed logins: no login is checked for a while.
    #[error("account locked after repeated failed logins; retry in {retry_after_ms} ms")]
    Locked {
        /// Milliseconds until a login may be tried again.
        retry_after_ms: u64,
    },
    /// The caller may not do this (e.g. review a product without a delivered order of it).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An entity state did not encode (a defect, not bad input): the command was undone.
    #[error("entity state encoding failed: {0}")]
    StateCodec(String),
}

/// Shorthand for an `Invalid` error.
pub fn invalid(field: &str, reason: impl Into<String>) -> DomainError {
    DomainError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}
