//! Delivers outside services' asynchronous answers (gateway results, courier bookings) to
//! entities, retrying while the entity is unavailable; the entity deduplicates by id.

use crate::Deliver;
use agora_actors::client::AskError;
use agora_actors::gateway::CallbackSink;
use agora_actors::{Command, EntityRef};
use std::sync::Arc;
use std::time::Duration;

/// A `CallbackSink` over the region.
#[derive(Clone)]
pub struct RegionCallbacks {
    /// Where to deliver (the entity may live on another node).
    pub region: Arc<dyn Deliver>,
}

impl CallbackSink for RegionCallbacks {
    fn deliver(&self, to: EntityRef, msg_id: String, cmd: Command) {
        let region = self.region.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            for attempt in 0..30 {
                match region
                    .deliver(to.clone(), cmd.clone(), Some(msg_id.clone()))
                    .await
                {
                    Ok(_) => return,
                    Err(AskError::Domain(e)) => {
                        tracing::warn!(target_entity = %to, msg_id, error = %e, "callback refused");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(target_entity = %to, msg_id, attempt, error = %e, "callback retry");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::error!(target_entity = %to, msg_id, "callback given up; the entity's own timers recover");
        });
    }
}
