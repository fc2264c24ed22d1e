//! The live page (SPEC §7): an HTTP server in the host that shows the dashboard's panels and
//! pushes every point over a WebSocket as soon as its batch is durable in Redis.
//!
//! - [`LiveHub`] is the runner's [`CommitObserver`]: it turns each durable batch into one
//!   WebSocket message (its points, and its alarms with their evidence), only while
//!   somebody is watching.
//! - [`server`] serves the page, its script, history from Redis, and the socket.
//! - [`commands`] sends the page's device commands to Kafka and pushes their
//!   acknowledgements to the page.
//!
//! It never writes to Redis; to Kafka it writes only the device commands the page sends,
//! after checking them. Binds to localhost unless told otherwise.

pub mod commands;
pub mod server;

use std::collections::HashMap;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::engine::{Effects, OutTopic, SeriesDef, SeriesId};
use crate::runner::CommitObserver;

/// One stored point as the page receives it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LivePoint<'a> {
    pub site: &'a str,
    pub sensor: &'a str,
    pub kind: &'a str,
    pub ts: i64,
    pub value: f64,
}

/// Fans durable batches out to WebSocket clients.
pub struct LiveHub {
    sender: broadcast::Sender<String>,
    series: HashMap<SeriesId, SeriesDef>,
}

impl LiveHub {
    pub fn new() -> LiveHub {
        // Slow clients lag and skip ahead (they reload history) rather than hold the host back.
        let (sender, _) = broadcast::channel(256);
        LiveHub {
            sender,
            series: HashMap::new(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.sender.subscribe()
    }

    pub fn sender(&self) -> broadcast::Sender<String> {
        self.sender.clone()
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub::new()
    }
}

impl CommitObserver for LiveHub {
    fn committed(&mut self, effects: &Effects) {
        for def in &effects.new_series {
            self.series.insert(def.id, def.clone());
        }
        if self.sender.receiver_count() == 0 || effects.samples.is_empty() {
            return;
        }
        // Alarm records as published (site, rule, ts_ms, value, evidence).
        let alarms: Vec<serde_json::Value> = effects
            .records
            .iter()
            .filter(|r| r.topic == OutTopic::Alarms)
            .filter_map(|r| serde_json::from_str(&r.value).ok())
            .collect();
        let points: Vec<LivePoint<'_>> = effects
            .samples
            .iter()
            .filter_map(|s| {
                let def = self.series.get(&s.series)?;
                Some(LivePoint {
                    site: &def.name.site,
                    sensor: &def.name.sensor,
                    kind: def.name.kind.as_str(),
                    ts: s.ts_ms,
                    value: s.value,
                })
            })
            .collect();
        let rejected = effects
            .records
            .iter()
            .filter(|r| r.topic == OutTopic::LateRejected)
            .count();
        let message =
            serde_json::json!({ "points": points, "late_rejected": rejected, "alarms": alarms })
                .to_string();
        let _ = self.sender.send(message);
    }
}
