//! Agora's deterministic simulator: the real node code on turmoil hosts, a simulated disk
//! behind redb, faults drawn from one seed, simulated shoppers, and checkers for the
//! promises. See `agora-sim --help` and the README's "Simulation" section.

pub mod carts;
pub mod check;
pub mod disk;
pub mod effects;
pub mod faults;
pub mod host;
pub mod linearizable;
pub mod membership;
pub mod models;
pub mod net;
pub mod notify_services;
pub mod pickups;
pub mod replicas;
pub mod run;
pub mod seed;
pub mod served;
pub mod wallets;
pub mod workload;
