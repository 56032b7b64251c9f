//! Keeps every event in memory, for tests.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Sink, SinkError, count_events};
use crate::model::{Event, TopicCounts};

/// The in-memory sink; clones share the same store.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<Event>>>,
    delivered: TopicCounts,
}

impl MemorySink {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event written so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn write(&mut self, events: &[Event], _created: Instant) -> Result<(), SinkError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(events);
        count_events(&mut self.delivered, events);
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn delivered(&self) -> TopicCounts {
        self.delivered
    }
}
