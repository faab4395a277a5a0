//! The seams through which logic reads time and randomness (defined in `agora-seams`, below
//! every crate; production implementations in `agora_seams::system`, simulated ones in
//! `agora-sim`).

pub use agora_seams::{run_blocking, BlockingPool, Clock, RandomSource};
