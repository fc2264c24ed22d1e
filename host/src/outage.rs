//! Outages of the services the host depends on, logged once when they start and once when
//! they end.
//!
//! While Kafka or Redis is away, every client retry fails; logging each one buries the
//! one fact an operator needs (the service is down since when, and is it back). Each
//! service has one [`Outage`]: the first failure logs a WARN line saying what failed and
//! that the host waits; later failures are counted and logged at DEBUG only; the first
//! success after them logs an INFO line with the outage's length and retry count.
//!
//! The trackers are process-wide ([`KAFKA`], [`REDIS`]): the consumer, the producer and the
//! store all report to the one of their service, so an outage is one line whichever
//! client saw it first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures reported this soon after a recovery belong to the outage that just ended:
/// clients report some of their retries late (librdkafka's log and error callbacks are
/// queued), and one outage must not show as several. A real new outage keeps failing and is
/// logged once this has passed.
const SETTLE: Duration = Duration::from_secs(3);

/// Kafka: the consumer of `readings` and the producer of the output topics.
pub static KAFKA: Outage = Outage::new("Kafka");
/// Redis: the store of samples, checkpoints and plugin builds.
pub static REDIS: Outage = Outage::new("Redis");

/// The log events of an outage (their messages, so tests and operators can grep them).
pub mod events {
    /// WARN, once per outage: `<service> unreachable: <error>; ...`
    pub const UNREACHABLE: &str = "unreachable";
    /// INFO, once per outage: `<service> is back after <seconds> s ...`
    pub const BACK: &str = "is back after";
}

/// One service's outage state.
pub struct Outage {
    service: &'static str,
    state: Mutex<State>,
    failures: AtomicU64,
}

struct State {
    /// When the current outage started; `None` while the service works.
    since: Option<Instant>,
    /// When the last outage ended.
    recovered: Option<Instant>,
}

impl Outage {
    pub const fn new(service: &'static str) -> Outage {
        Outage {
            service,
            state: Mutex::new(State {
                since: None,
                recovered: None,
            }),
            failures: AtomicU64::new(0),
        }
    }

    /// A call to the service failed in a way that waiting cures (connection refused or
    /// dropped, timeout, the server still loading). Logs only the first of an outage.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.since.is_none() && state.recovered.is_some_and(|at| at.elapsed() < SETTLE) {
            tracing::debug!(
                service = self.service,
                "{} failed right after it came back (a late report of the outage): {error}",
                self.service
            );
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global()
            .service_failures
            .get_or_create(&crate::metrics::ServiceLabels {
                service: self.service,
            })
            .inc();
        if state.since.is_none() {
            state.since = Some(Instant::now());
            tracing::warn!(
                service = self.service,
                "{} {}: {error}; the host waits and retries until it is back (nothing is lost: the batch in hand is retried whole)",
                self.service,
                events::UNREACHABLE,
            );
        } else {
            tracing::debug!(
                service = self.service,
                "{} still unreachable: {error}",
                self.service
            );
        }
    }

    /// A call to the service worked. Ends the outage, if there was one, with a log line.
    pub fn succeeded(&self) {
        // Fast path, no lock: the common case is "no outage".
        if self.failures.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(started) = state.since.take() {
            state.recovered = Some(Instant::now());
            let failures = self.failures.swap(0, Ordering::Relaxed);
            tracing::info!(
                service = self.service,
                outage_ms = started.elapsed().as_millis() as u64,
                failed_calls = failures,
                "{} {} {:.1} s",
                self.service,
                events::BACK,
                started.elapsed().as_secs_f64(),
            );
        } else {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Whether an outage is going on.
    pub fn is_out(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .is_some()
    }
}

/// librdkafka's own log lines. Connection failures (one per retry, per broker) are the
/// outage's business and go to DEBUG; other errors stay visible as warnings.
pub fn kafka_client_log(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    let connection_noise = matches!(
        fac,
        "FAIL" | "ERROR" | "BROKERFAIL" | "CONNECT" | "ALLBROKERSDOWN"
    ) || message.contains("Connection refused")
        || message.contains("Disconnected")
        || message.contains("brokers are down");
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning if connection_noise => {
            KAFKA.failed(&format_args!("{fac}: {message}"))
        }
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::warn!(target: "librdkafka", "{fac}: {message}")
        }
        _ => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
    }
}

/// librdkafka's periodic statistics (raw JSON, parsed only during an outage): a broker of
/// the cluster (not a bootstrap address) in state `UP` ends a Kafka outage, even while no
/// record flows.
pub fn kafka_statistics(json: &[u8]) {
    if !KAFKA.is_out() {
        return;
    }
    let Ok(statistics) = serde_json::from_slice::<rdkafka::Statistics>(json) else {
        return;
    };
    kafka_brokers_seen(&statistics);
}

/// Ends a Kafka outage once the client's statistics show a broker up again.
pub fn kafka_brokers_seen(statistics: &rdkafka::Statistics) {
    if KAFKA.is_out()
        && statistics
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP")
    {
        KAFKA.succeeded();
    }
}
