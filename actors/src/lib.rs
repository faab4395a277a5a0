//! Agora's domain: every business entity is an actor whose logic is a pure function of
//! (state, command, context). This crate holds the entity kinds, their commands and replies,
//! the order saga, and the traits (with simulated implementations) for the outside world.
//! It knows nothing about ractor, redb or HTTP: the runtime in `agora-node` hosts it.

pub mod account;
pub mod buggify;
pub mod card;
pub mod cart;
pub mod client;
pub mod command;
pub mod courier;
pub mod entity;
pub mod error;
pub mod etag;
pub mod gateway;
pub mod hex;
pub mod history;
pub mod host;
pub mod ids;
pub mod inbox;
pub mod legacy;
pub mod limits;
pub mod message;
pub mod money;
pub mod notify;
pub mod order;
pub mod payment;
pub mod product;
pub mod review;
pub mod review_slot;
pub mod seams;
pub mod session;
pub mod shipment;
pub mod shipping;
pub mod stock;

pub use command::{Command, Reply};
pub use entity::{Ctx, Outcome};
pub use error::DomainError;
pub use ids::{EntityKind, EntityRef};
pub use message::{Destination, ExternalCall, OutboxMessage};
pub use money::Money;
