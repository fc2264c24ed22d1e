//! `iot-simulator`: simulated building sensors publishing readings to Kafka.
//!
//! Fast mode (`--days N`): as fast as the broker takes it, with a progress bar.
//! Real-time mode (no `--days`, or `--speed`/`--real-time`): one 15-minute step per second
//! of wall time (`--speed X`: X steps per second), until Ctrl-C or the end of `--days`.
//! At the end, and on Ctrl-C, it prints what it sent, per kind and per sensor.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use iot_simulator::clock;
use iot_simulator::devices::CommandTopics;
use iot_simulator::{publish, Format, Layout, Pace, PublishConfig, SimConfig};
use tracing_subscriber::EnvFilter;

/// Simulated building sensors (TH1, TH2, HVAC1, HVAC2, MiAC1, MiAC2, W1, Etot, Wtot, Mov1)
/// publishing readings to Kafka, keyed by site id.
///
/// Fast mode: `--days N` sends N days as fast as the broker takes them.
/// Real-time mode (without --days, or with --speed / --real-time): one 15-minute step per
/// second of wall time, until Ctrl-C (or the end of --days).
#[derive(Debug, Parser)]
#[command(name = "iot-simulator", version, about, long_about)]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    kafka: String,
    /// Topic to publish to (created with --partitions partitions if it does not exist).
    #[arg(long, default_value = "readings")]
    topic: String,
    /// Number of sites (buildings), each with the ten sensors: s1, s2, …
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    sites: u32,
    /// Seed of the run: the same seed sends the same readings.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// First instant (step 0), a UTC midnight: 2020-01-01 or 2020-01-01T00:00:00Z.
    /// Default: 2020-01-01 in fast mode, today's UTC midnight in real-time mode.
    #[arg(long, value_parser = clock::parse_start)]
    start: Option<i64>,
    /// Number of days to send; alone it selects fast mode.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    days: Option<u32>,
    /// Real-time mode at this many 15-minute steps per second of wall time.
    #[arg(long, conflicts_with = "real_time")]
    speed: Option<f64>,
    /// Real-time mode at one step per second, also with --days.
    #[arg(long)]
    real_time: bool,
    /// Record value format (line: one site only; the host files it under its default site).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Where readings go: keyed by site on one topic (by-site), or the course project's
    /// producer (course: plain lines stamped at the start of their interval, a partition
    /// per sensor type, the 10-days-late readings on `<topic>-late`; one site). Read the
    /// course layout with `iot-host repartition` (see the README).
    #[arg(long, value_enum, default_value_t = Layout::BySite)]
    layout: Layout,
    /// Site ids are this prefix and the site's number.
    #[arg(long, default_value = "s")]
    site_prefix: String,
    /// Partitions of the topic if the simulator creates it.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Topic of device commands to obey, in real-time mode (key: site id).
    #[arg(long, default_value = "commands")]
    commands_topic: String,
    /// Topic the devices acknowledge commands on.
    #[arg(long, default_value = "command-acks")]
    command_acks_topic: String,
    /// Obey no commands (real-time mode obeys them by default; fast mode never does).
    #[arg(long)]
    no_commands: bool,
}

impl Cli {
    fn pace(&self) -> Pace {
        match (self.days, self.speed, self.real_time) {
            (_, Some(steps_per_second), _) => Pace::RealTime { steps_per_second },
            (Some(_), None, false) => Pace::Fast,
            _ => Pace::RealTime {
                steps_per_second: 1.0,
            },
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let pace = cli.pace();
    let start_ms = cli.start.unwrap_or_else(|| match pace {
        Pace::Fast => clock::default_fast_start(),
        Pace::RealTime { .. } => clock::today_utc_midnight(),
    });
    let config = PublishConfig {
        bootstrap: cli.kafka.clone(),
        topic: cli.topic.clone(),
        sim: SimConfig {
            sites: cli.sites,
            seed: cli.seed,
            start_ms,
            days: cli.days,
            site_prefix: cli.site_prefix.clone(),
        },
        pace,
        format: cli.format,
        layout: cli.layout,
        partitions_if_created: cli.partitions,
        progress: true,
        commands: match pace {
            Pace::RealTime { .. } if !cli.no_commands => Some(CommandTopics {
                commands: cli.commands_topic.clone(),
                acks: cli.command_acks_topic.clone(),
            }),
            _ => None,
        },
    };
    match pace {
        Pace::Fast => tracing::info!(
            "fast mode: {} site(s), {} day(s) from {}, to {:?} at {}",
            cli.sites,
            cli.days.unwrap_or_default(),
            iot_protocol::time::format_ts(start_ms),
            cli.topic,
            cli.kafka
        ),
        Pace::RealTime { steps_per_second } => tracing::info!(
            "real-time mode: {} site(s) from {}, {steps_per_second} step(s) of 15 min per second, to {:?} at {}; \
             Ctrl-C stops",
            cli.sites,
            iot_protocol::time::format_ts(start_ms),
            cli.topic,
            cli.kafka
        ),
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C: stopping after this step, waiting for Kafka's acknowledgements (Ctrl-C again quits at once)");
                stop.store(true, Ordering::Relaxed);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    match publish(config, stop).await {
        Ok(report) => {
            print!("{report}");
            if report.failure.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("iot-simulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
