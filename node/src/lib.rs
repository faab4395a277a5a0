//! The `agora` binary's library: the assembly of a node from the store, the entity runtime,
//! the cluster and the edge, the admin endpoint and its operator console, the outside-world
//! adapters (payment gateway client and simulator, notification sinks) and the demo catalog
//! seed.

pub mod admin;
pub mod admin_dead_letters;
pub mod admin_dto;
pub mod admin_faults;
pub mod admin_members;
pub mod admin_openapi;
pub mod admin_operations;
pub mod admin_removal;
pub mod admin_replicas;
pub mod cards;
pub mod console;
pub mod listener;
pub mod metrics_catalog;
pub mod node;
pub mod outbound;
pub mod payment_gateway_sim;
pub mod payment_http;
pub mod placement_balancer;
pub mod prompt_elections;
pub mod replica_moves;
pub mod replicas;
pub mod seed;
pub mod sinks;
pub mod smtp;
