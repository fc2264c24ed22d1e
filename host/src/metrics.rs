//! The host's Prometheus metrics, every one named and defined here, served as text at
//! `/metrics` on the host's HTTP address (`--http`).
//!
//! Guarantees: counters only grow for the life of the process (Prometheus computes rates
//! and survives restarts); they count what the host did, whether or not it became durable
//! (a batch retried after a Redis outage is folded once, stored once, published once;
//! one folded again after a crash counts in the new process). Several hosts in one process
//! (tests) share them.
//!
//! Cost: counters are updated per batch, not per reading, except the plugin metrics, which
//! are per call through handles resolved once per plugin instance ([`PluginMeter`]): an
//! atomic add or two, no lookup or allocation on the hot path; one call in
//! [`PluginMeter::TIME_ONE_CALL_IN`] is also timed.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::Stats;

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub tenant: String,
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabels {
    pub tenant: String,
    pub plugin: String,
    pub call: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the host. Names are given without the `_total` a counter gets when it
/// is encoded.
pub struct Metrics {
    registry: Registry,
    /// Records taken from the readings topic, per partition.
    pub records_read: Family<PartitionLabels, Counter>,
    /// Records between the host's position and the end of the partition (from the Kafka
    /// client's statistics, every second).
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// 1 for each partition of the readings topic the group gave this host and has not
    /// taken back; a revoked partition loses its gauge. Summed over the hosts of a group,
    /// each partition should be 1.
    pub partition_owned: Family<PartitionLabels, Gauge>,
    /// Readings by what the engine did with them: `on_time`, `late_accepted`,
    /// `late_rejected`, `dead_letter`, `skipped_replayed`, `skipped_fenced`.
    pub readings: Family<OutcomeLabels, Counter>,
    /// Dead-lettered records, per reason (SPEC: bad input).
    pub dead_letters: Family<ReasonLabels, Counter>,
    /// Daily values the plugins emitted (new or changed).
    pub outputs_emitted: Counter,
    /// Alarms the alarm rules raised (a replay after a crash counts again).
    pub alarms_raised: Counter,
    /// Records published to the output topics, per topic, once their batch is durable.
    pub records_published: Family<TopicLabels, Counter>,
    /// Readings per batch the engine folded.
    pub batch_records: Histogram,
    /// From a batch handed to the durable side to its outputs published and stored.
    pub batch_durable_seconds: Histogram,
    /// Plugin calls, per tenant, plugin and call (`init`, `fold`, `finish`).
    pub plugin_calls: Family<PluginCallLabels, Counter>,
    /// Time per plugin call (a sample: see [`PluginMeter::TIME_ONE_CALL_IN`]).
    pub plugin_call_seconds: HistogramFamily<PluginCallLabels>,
    /// Plugin calls that failed: a trap (fuel, memory or a bug) or an error returned. (A
    /// non-finite value or an accumulator over the bound is found after the call; the
    /// `plugin-errors` topic has those.)
    pub plugin_failures: Family<PluginCallLabels, Counter>,
    /// Fuel the plugin calls burnt (about one unit per WebAssembly instruction).
    pub plugin_fuel: Family<PluginLabels, Counter>,
    /// Linear memory of the plugin's live instances, in bytes.
    pub plugin_memory_bytes: Family<PluginLabels, Gauge>,
    /// Plugin builds quarantined after failing too often in a row.
    pub plugin_quarantines: Family<PluginLabels, Counter>,
    /// New builds or pipelines a tenant went live with (hot swaps).
    pub swaps: Family<TenantLabels, Counter>,
    /// Windows held now (a plugin build failed on them), per tenant; updated with the
    /// progress log (every 10 s by default), not per batch.
    pub held_windows: Family<TenantLabels, Gauge>,
    /// Calls to Kafka or Redis that failed and will be retried (outages).
    pub service_failures: Family<ServiceLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("iot"),
            records_read: Family::default(),
            consumer_lag: Family::default(),
            partition_owned: Family::default(),
            readings: Family::default(),
            dead_letters: Family::default(),
            outputs_emitted: Counter::default(),
            alarms_raised: Counter::default(),
            records_published: Family::default(),
            // 1 to 32,768 readings.
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            // 1 ms to about 33 s.
            batch_durable_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(call_histogram),
            plugin_failures: Family::default(),
            plugin_fuel: Family::default(),
            plugin_memory_bytes: Family::default(),
            plugin_quarantines: Family::default(),
            swaps: Family::default(),
            held_windows: Family::default(),
            service_failures: Family::default(),
        };
        // The registry holds clones of the families (they share their values).
        let r = &mut m.registry;
        r.register(
            "records_read",
            "Records taken from the readings topic",
            m.records_read.clone(),
        );
        r.register(
            "consumer_lag",
            "Records not read yet, per partition",
            m.consumer_lag.clone(),
        );
        r.register(
            "partition_owned",
            "1 for each partition of the readings topic this host holds",
            m.partition_owned.clone(),
        );
        r.register("readings", "Readings by outcome", m.readings.clone());
        r.register(
            "dead_letters",
            "Records dead-lettered, by reason",
            m.dead_letters.clone(),
        );
        r.register(
            "outputs_emitted",
            "Daily values emitted",
            m.outputs_emitted.clone(),
        );
        r.register(
            "alarms_raised",
            "Alarms raised by alarm rules",
            m.alarms_raised.clone(),
        );
        r.register(
            "records_published",
            "Records published, by topic",
            m.records_published.clone(),
        );
        r.register(
            "batch_records",
            "Readings per batch",
            m.batch_records.clone(),
        );
        r.register(
            "batch_durable_seconds",
            "Time from a folded batch to its outputs published and stored",
            m.batch_durable_seconds.clone(),
        );
        r.register("plugin_calls", "Plugin calls", m.plugin_calls.clone());
        r.register(
            "plugin_call_seconds",
            "Time per plugin call",
            m.plugin_call_seconds.clone(),
        );
        r.register(
            "plugin_failures",
            "Plugin calls that failed",
            m.plugin_failures.clone(),
        );
        r.register(
            "plugin_fuel",
            "Fuel burnt by plugin calls",
            m.plugin_fuel.clone(),
        );
        r.register(
            "plugin_memory_bytes",
            "Linear memory of a plugin's live instances",
            m.plugin_memory_bytes.clone(),
        );
        r.register(
            "plugin_quarantines",
            "Plugin builds quarantined",
            m.plugin_quarantines.clone(),
        );
        r.register(
            "swaps",
            "Builds or pipelines a tenant went live with",
            m.swaps.clone(),
        );
        r.register(
            "held_windows",
            "Windows held because a plugin build failed on them, per tenant",
            m.held_windows.clone(),
        );
        r.register(
            "service_failures",
            "Failed calls to Kafka or Redis (retried)",
            m.service_failures.clone(),
        );
        // Zeros from the start, so a dashboard shows "none yet" rather than "no data".
        for service in ["Kafka", "Redis"] {
            let _ = m.service_failures.get_or_create(&ServiceLabels { service });
        }
        m
    }

    /// The metrics in the Prometheus text format (OpenMetrics).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// Counts what the engine did since `before` (a runner keeps its last snapshot).
    /// Sets the held-windows gauge of each tenant (`Engine::held_windows`).
    pub fn set_held_windows(&self, held: &[(&str, usize)]) {
        for &(tenant, count) in held {
            self.held_windows
                .get_or_create(&TenantLabels {
                    tenant: tenant.to_owned(),
                })
                .set(count as i64);
        }
    }

    pub fn add_engine_progress(&self, before: &Stats, now: &Stats) {
        let outcomes = [
            ("on_time", before.on_time, now.on_time),
            ("late_accepted", before.late_accepted, now.late_accepted),
            ("late_rejected", before.late_rejected, now.late_rejected),
            (
                "dead_letter",
                before.dead_letter_total(),
                now.dead_letter_total(),
            ),
            (
                "skipped_replayed",
                before.skipped_replayed,
                now.skipped_replayed,
            ),
            ("skipped_fenced", before.skipped_fenced, now.skipped_fenced),
        ];
        for (outcome, was, is) in outcomes {
            if is > was {
                self.readings
                    .get_or_create(&OutcomeLabels { outcome })
                    .inc_by(is - was);
            }
        }
        for (&reason, &is) in &now.dead_letters {
            let was = before.dead_letters.get(reason).copied().unwrap_or(0);
            if is > was {
                self.dead_letters
                    .get_or_create(&ReasonLabels { reason })
                    .inc_by(is - was);
            }
        }
        self.outputs_emitted
            .inc_by(now.outputs_emitted.saturating_sub(before.outputs_emitted));
        self.alarms_raised
            .inc_by(now.alarms_raised.saturating_sub(before.alarms_raised));
    }

    /// The handles a plugin instance updates on every call.
    pub fn plugin_meter(&self, tenant: &str, plugin: &str) -> PluginMeter {
        let labels = PluginLabels {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
        };
        let call = |call: &'static str| {
            let labels = PluginCallLabels {
                tenant: tenant.to_owned(),
                plugin: plugin.to_owned(),
                call,
            };
            CallMeter {
                calls: self.plugin_calls.get_or_create(&labels).clone(),
                seconds: self.plugin_call_seconds.get_or_create(&labels).clone(),
                failures: self.plugin_failures.get_or_create(&labels).clone(),
            }
        };
        // Zeros from the first instance on (see `new`).
        let _ = self.plugin_quarantines.get_or_create(&labels);
        let _ = self.swaps.get_or_create(&TenantLabels {
            tenant: tenant.to_owned(),
        });
        PluginMeter {
            init: call("init"),
            fold: call("fold"),
            finish: call("finish"),
            fuel: self.plugin_fuel.get_or_create(&labels).clone(),
            memory: self.plugin_memory_bytes.get_or_create(&labels).clone(),
        }
    }
}

/// Buckets of a plugin call's time: 1 µs to about 1 s.
fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-6, 4.0, 11))
}

/// One call's metrics of one plugin in one tenant.
#[derive(Clone)]
pub struct CallMeter {
    calls: Counter,
    seconds: Histogram,
    failures: Counter,
}

impl CallMeter {
    /// Counts a call; `took` is its time if it was one of the timed calls.
    pub fn record(&self, took: Option<Duration>, failed: bool) {
        self.calls.inc();
        if let Some(took) = took {
            self.seconds.observe(took.as_secs_f64());
        }
        if failed {
            self.failures.inc();
        }
    }
}

/// A plugin instance's metrics, resolved once when it is made.
#[derive(Clone)]
pub struct PluginMeter {
    pub init: CallMeter,
    pub fold: CallMeter,
    pub finish: CallMeter,
    pub fuel: Counter,
    pub memory: Gauge,
}

impl PluginMeter {
    /// An instance times its first call and then one call in this many for
    /// `iot_plugin_call_seconds` (the rest are counted, not timed): reading the clock
    /// twice and updating the histogram cost about 0.1 µs, as much as a third of a small
    /// fold call. Counters, fuel and memory are exact.
    pub const TIME_ONE_CALL_IN: u32 = 16;

    /// The meter of a call by its name (`info` and instantiation count as `init`).
    pub fn call(&self, call: &str) -> &CallMeter {
        match call {
            "fold" => &self.fold,
            "finish" => &self.finish,
            _ => &self.init,
        }
    }
}
