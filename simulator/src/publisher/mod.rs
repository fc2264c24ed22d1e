//! Publishing a run to Kafka (SPEC §4): one record per reading on the `readings` topic,
//! keyed by site id, so all sensors of a site share a partition.
//!
//! The producer is idempotent (acks=all, ordered retries): per partition, records land in
//! the order they were generated, which is the order the host sees. Memory stays bounded:
//! records wait in librdkafka's queue (at most [`QUEUE_MAX_MESSAGES`]); when it is full the
//! generator waits for deliveries instead of buffering more.
//!
//! Records carry Kafka's create time, not the reading's time: simulated times are in the
//! past (2020, or 10 days back for late readings) and the broker's time-based retention
//! would otherwise delete them at once.
//!
//! - here: the run (pacing, routing and encoding readings, obeying commands);
//! - [`client`]: the producer, its delivery reports, topics, handing a record over;
//! - [`report`]: what a run did ([`PublishReport`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::DateTime;
use indicatif::{ProgressBar, ProgressStyle};
use iot_protocol::time::{format_ts, STEPS_PER_DAY};
use rdkafka::producer::{BaseRecord, Producer};

mod client;
mod report;

use client::{create_topic, producer, send, topic_exists, Deliveries, Halt, Kafka};
pub use report::PublishReport;

use crate::clock::{self, Pacer};
use crate::devices::{CommandListener, CommandTopics, Devices};
use crate::generator::{Generator, SimConfig, SimReading};
use crate::layout::{Layout, COURSE_LATE_TOPIC_SUFFIX, COURSE_PARTITIONS};
use crate::summary::Summary;

/// At most this many records wait in the producer's queue.
pub const QUEUE_MAX_MESSAGES: usize = 200_000;
/// How long the end of a run waits for the last acknowledgements.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a record may wait for Kafka before the run gives up (librdkafka retries until
/// then, also while the broker is away).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the start waits for the broker to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How fast steps go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the broker takes it.
    Fast,
    /// `steps_per_second` 15-minute steps per second of wall time (SPEC: 1).
    RealTime { steps_per_second: f64 },
}

/// The record value format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `{"site":"s1","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":12.4}`
    #[default]
    Json,
    /// `TH1 2020-01-01 00:15:00 12.4`: carries no site, the host files it under its
    /// default site; only with one site.
    Line,
}

/// Where and how to publish a run.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub bootstrap: String,
    pub topic: String,
    pub sim: SimConfig,
    pub pace: Pace,
    pub format: Format,
    /// Where readings go (`Layout::Course` implies the line format and one site).
    pub layout: Layout,
    /// Partitions of the topic if the simulator has to create it (SPEC: 6).
    pub partitions_if_created: i32,
    /// Show a progress bar over steps (fast mode, only when stderr is a terminal).
    pub progress: bool,
    /// Obey device commands and acknowledge them (`devices.rs`); `None`: no commands.
    pub commands: Option<CommandTopics>,
}

impl PublishConfig {
    /// Fast mode, JSON records, no progress bar: what tests and benchmarks want.
    pub fn fast(
        bootstrap: impl Into<String>,
        topic: impl Into<String>,
        sim: SimConfig,
    ) -> PublishConfig {
        PublishConfig {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            sim,
            pace: Pace::Fast,
            format: Format::Json,
            layout: Layout::BySite,
            partitions_if_created: 6,
            progress: false,
            commands: None,
        }
    }
}

/// Publishes a run. Returns when the run ends (`--days`), or soon after `stop` becomes true,
/// once Kafka has acknowledged what was sent. Errors before anything was sent (no broker,
/// bad configuration) are `Err`; a failure while sending is in the report, with the counts.
pub async fn publish(
    config: PublishConfig,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<PublishReport> {
    let mut config = config;
    if config.layout == Layout::Course {
        config.format = Format::Line;
        config.partitions_if_created = COURSE_PARTITIONS;
    }
    if config.format == Format::Line && config.sim.sites != 1 {
        bail!(
            "the line format carries no site, so it works with one site only (the host files line \
             records under its default site): use --format json with --sites {}",
            config.sim.sites
        );
    }
    let generator = Generator::new(config.sim.clone())?;
    let deliveries = Arc::new(Deliveries::default());
    let producer = producer(&config.bootstrap, deliveries.clone())?;
    let (producer, exists) = {
        let (bootstrap, topic) = (config.bootstrap.clone(), config.topic.clone());
        tokio::task::spawn_blocking(move || {
            let exists = topic_exists(&producer, &bootstrap, &topic);
            (producer, exists)
        })
        .await?
    };
    if !exists? {
        create_topic(
            &config.bootstrap,
            &config.topic,
            config.partitions_if_created,
        )
        .await?;
    }
    if config.layout == Layout::Course {
        // Created even if it exists: "already exists" is fine.
        create_topic(&config.bootstrap, &late_topic(&config.topic), 1).await?;
    }
    let report =
        tokio::task::spawn_blocking(move || run(generator, producer, deliveries, config, stop))
            .await?;
    Ok(report)
}

/// The sending loop, on a blocking thread.
fn run(
    mut generator: Generator,
    producer: Kafka,
    deliveries: Arc<Deliveries>,
    config: PublishConfig,
    stop: Arc<AtomicBool>,
) -> PublishReport {
    let stopped = || stop.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut report = PublishReport {
        bootstrap: config.bootstrap.clone(),
        topic: config.topic.clone(),
        sites: generator.site_ids().to_vec(),
        seed: config.sim.seed,
        summary: Summary::default(),
        acknowledged: 0,
        steps: 0,
        first_step_ts: None,
        last_step_ts: None,
        interrupted: false,
        elapsed: Duration::ZERO,
        failure: None,
    };
    let pacer = match config.pace {
        Pace::Fast => None,
        Pace::RealTime { steps_per_second } => match Pacer::new(steps_per_second) {
            Ok(p) => Some(p),
            Err(e) => {
                report.failure = Some(e.to_string());
                return report;
            }
        },
    };
    let bar = progress_bar(&config, generator.total_steps());
    let late_topic = late_topic(&config.topic);
    let mut readings: Vec<SimReading> = Vec::new();
    let mut payload = String::new();
    let listener = match &config.commands {
        Some(topics) => match CommandListener::connect(&config.bootstrap, &topics.commands) {
            Ok(listener) => Some((listener, topics.acks.clone())),
            Err(e) => {
                // The readings matter more than the remote control: run without it.
                tracing::warn!("devices obey no commands in this run: {e:#}");
                None
            }
        },
        None => None,
    };
    let mut devices = Devices::default();

    'steps: loop {
        if stopped() {
            report.interrupted = true;
            break;
        }
        if let Some(pacer) = &pacer {
            if !pacer.wait_for(generator.next_k(), &stopped) {
                report.interrupted = true;
                break;
            }
        }
        if let Some((listener, acks)) = &listener {
            let now = clock::step_ts(config.sim.start_ms, generator.next_k());
            obey_commands(listener, acks, now, &generator, &mut devices, &producer);
        }
        let Some((k, t)) = generator.next_step_into(&mut readings) else {
            break;
        };
        devices.adjust(&mut readings);
        for r in &readings {
            let route = config.layout.route(r);
            let stamped = SimReading {
                ts_ms: route.ts_ms,
                ..*r
            };
            encode(&generator, &stamped, config.format, &mut payload);
            let topic = if route.late_topic {
                late_topic.as_str()
            } else {
                config.topic.as_str()
            };
            let mut record = BaseRecord::<str, str>::to(topic).payload(payload.as_str());
            if route.keyed {
                record = record.key(generator.site_ids()[r.site as usize].as_str());
            }
            if let Some(partition) = route.partition {
                record = record.partition(partition);
            }
            if let Err(halt) = send(&producer, record, &deliveries, &stopped) {
                match halt {
                    Halt::Interrupted => report.interrupted = true,
                    Halt::Failed(failure) => report.failure = Some(failure),
                }
                break 'steps;
            }
            report.summary.add(r);
        }
        report.steps += 1;
        report.first_step_ts.get_or_insert(t);
        report.last_step_ts = Some(t);
        bar.inc(1);
        if let Some(failure) = deliveries.failure() {
            report.failure = Some(failure);
            break;
        }
        if k > 0 && k % STEPS_PER_DAY as u64 == 0 {
            let message = format!(
                "simulated day up to {} sent: {} readings so far",
                format_ts(t),
                report.summary.total()
            );
            if bar.is_hidden() && pacer.is_some() {
                tracing::info!("{message}");
            } else {
                bar.set_message(format!("{} readings", report.summary.total()));
            }
        }
    }
    bar.finish_and_clear();

    if let Err(e) = producer.flush(FLUSH_TIMEOUT) {
        let pending = producer.in_flight_count();
        report.failure.get_or_insert(format!(
            "Kafka at {} did not acknowledge {pending} reading(s) within {} s ({e}): is it still \
             running? (scripts/stack status)",
            config.bootstrap,
            FLUSH_TIMEOUT.as_secs()
        ));
    }
    if let Some(failure) = deliveries.failure() {
        report.failure.get_or_insert(failure);
    }
    report.acknowledged = deliveries.acknowledged.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    report
}

/// Applies the commands that arrived for this simulator's sites to its devices, and
/// acknowledges each with the simulated instant `now` it applied it.
fn obey_commands(
    listener: &CommandListener,
    acks_topic: &str,
    now: i64,
    generator: &Generator,
    devices: &mut Devices,
    producer: &Kafka,
) {
    let mut commands = Vec::new();
    listener.take(Duration::ZERO, &mut commands);
    for command in commands {
        let Some(site) = generator.site_ids().iter().position(|s| *s == command.site) else {
            continue; // another simulator's site
        };
        devices.apply(site as u32, &command);
        let ack = command.ack_json(now);
        let record = BaseRecord::<str, str>::to(acks_topic)
            .key(command.site.as_str())
            .payload(ack.as_str());
        if let Err((e, _)) = producer.send(record) {
            tracing::warn!("cannot acknowledge command {}: {e}", command.id);
        }
    }
}

/// The course layout's topic of 10-days-late readings.
pub fn late_topic(topic: &str) -> String {
    format!("{topic}{COURSE_LATE_TOPIC_SUFFIX}")
}

fn progress_bar(config: &PublishConfig, total_steps: Option<u64>) -> ProgressBar {
    let show = config.progress && config.pace == Pace::Fast && std::io::stderr().is_terminal();
    match total_steps {
        Some(total) if show => {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} steps, {per_sec}, eta {eta} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        }
        _ => ProgressBar::hidden(),
    }
}

/// The record value of a reading in `format`, into `out`.
pub fn encode(generator: &Generator, r: &SimReading, format: Format, out: &mut String) {
    out.clear();
    match format {
        Format::Json => out.push_str(&generator.reading(r).to_json()),
        Format::Line => {
            use std::fmt::Write;
            let time = DateTime::from_timestamp_millis(r.ts_ms).expect("a representable time");
            write!(
                out,
                "{} {} {}",
                r.sensor,
                time.format("%Y-%m-%d %H:%M:%S"),
                r.value
            )
            .expect("writing to a String");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_readings(format: Format) -> Vec<String> {
        let mut generator = Generator::new(SimConfig {
            days: Some(1),
            ..SimConfig::default()
        })
        .unwrap();
        let mut readings = Vec::new();
        generator.next_step_into(&mut readings).unwrap();
        generator.next_step_into(&mut readings).unwrap();
        let mut out = String::new();
        readings
            .iter()
            .map(|r| {
                encode(&generator, r, format, &mut out);
                out.clone()
            })
            .collect()
    }

    #[test]
    fn json_records_carry_site_sensor_time_and_value() {
        let first = &first_readings(Format::Json)[0];
        assert!(
            first
                .starts_with(r#"{"site":"s1","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":"#),
            "{first}"
        );
    }

    #[test]
    fn line_records_parse_back_as_the_same_reading() {
        let lines = first_readings(Format::Line);
        assert!(
            lines[0].starts_with("TH1 2020-01-01 00:15:00 "),
            "{}",
            lines[0]
        );
        let json = first_readings(Format::Json);
        for (line, json) in lines.iter().zip(&json) {
            let from_line = iot_protocol::parse_record(line.as_bytes(), "s1", 1024).unwrap();
            let from_json = iot_protocol::parse_record(json.as_bytes(), "other", 1024).unwrap();
            assert_eq!(from_line, from_json, "{line}");
        }
    }

    #[tokio::test]
    async fn an_absent_broker_is_reported_with_what_to_do() {
        let mut config = PublishConfig::fast("127.0.0.1:1", "readings", SimConfig::default());
        config.sim.days = Some(1);
        let err = publish(config, Arc::new(AtomicBool::new(false)))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not answer") && err.contains("scripts/stack up"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_line_format_refuses_several_sites() {
        let mut config = PublishConfig::fast("127.0.0.1:1", "readings", SimConfig::default());
        config.sim.sites = 2;
        config.format = Format::Line;
        let err = publish(config, Arc::new(AtomicBool::new(false)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("one site only"), "{err}");
    }
}
