//! Agora's runtime: storage, shard hosting, the outbox relay, the outside-world adapters,
//! the admin endpoint, and the assembly of a node.

pub mod admin;
pub mod catalog;
pub mod cluster;
pub mod node;
pub mod payment_http;
pub mod runtime;
pub mod seams;
pub mod search;
pub mod seed;
pub mod sinks;
pub mod store;
