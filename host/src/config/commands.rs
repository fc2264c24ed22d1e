//! The subcommands' arguments (`validate`, `repartition`, `plugin test|new`, `tap`); the
//! host's own settings are in the parent module.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{defaults, parse_duration};
use crate::plugin::{PluginLimits, WasiAccess};

/// Subcommands; without one the host runs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Checks plugin components before deploying them: loads each against the WIT and the
    /// sandbox rules, prints its info, and runs a probe window (init, fold, finish) under
    /// the limits. Exits non-zero, saying why, if any plugin fails.
    Validate(ValidateArgs),
    /// Reads producers' topics of any partition layout (JSON records or plain lines) and
    /// writes every reading, keyed by its site, to the readings topic, exactly once (Kafka
    /// transactions). Run it when a producer does not key records by site; scale it out by
    /// starting more instances with the same --group.
    Repartition(Box<RepartitionArgs>),
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Live-tails what the hosts write to Kafka (aggregates, late-rejected, dead-letter,
    /// plugin-errors), one record a line, optionally for one site or series. Reads only:
    /// a consumer group of its own, never committed.
    Tap(TapArgs),
}

#[derive(Debug, clap::Args)]
pub struct TapArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = defaults::KAFKA)]
    pub kafka: String,
    /// A topic to tail (repeatable). Default: the five output topics.
    #[arg(long = "topic", default_values_t = [
        defaults::AGGREGATES_TOPIC.to_owned(),
        defaults::LATE_REJECTED_TOPIC.to_owned(),
        defaults::DEAD_LETTER_TOPIC.to_owned(),
        defaults::PLUGIN_ERRORS_TOPIC.to_owned(),
        defaults::ALARMS_TOPIC.to_owned(),
    ])]
    pub topics: Vec<String>,
    /// Only records of this site (their `site` field, or their key).
    #[arg(long)]
    pub site: Option<String>,
    /// Only records whose key holds this, e.g. `:TH1:AggDay`.
    #[arg(long)]
    pub series: Option<String>,
    /// Start at the topics' beginning instead of what arrives from now on.
    #[arg(long)]
    pub from_start: bool,
    /// Stop once every partition is read to its end (with --from-start: show what is there).
    #[arg(long)]
    pub exit_at_end: bool,
    /// Stop after showing this many records.
    #[arg(long)]
    pub max: Option<u64>,
}

/// `iot-host plugin …`
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Runs a plugin over readings from a CSV file (`timestamp,value[,input]` a line) the way
    /// the host does, one day window at a time; prints each window's value, checks it with
    /// --expect, and checks that folding in one batch or several gives the same bytes.
    /// Exits non-zero if a check fails.
    Test(PluginTestArgs),
    /// Creates a new plugin crate on the SDK (an aggregation with a parameter, its tests and
    /// a day of readings) that builds, validates and passes its tests as it is.
    New(PluginNewArgs),
}

#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lowercase letters, digits and dashes (the crate is
    /// `plugin-NAME`, the build `NAME.wasm`).
    pub name: String,
    /// The folder to create it in (as `DIR/NAME`). In this repository's `plugins/` the crate
    /// joins the workspace; elsewhere it is a workspace of its own.
    #[arg(long, default_value = "plugins")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    /// The plugin's `.wasm` file.
    pub file: PathBuf,
    /// The readings: `timestamp,value[,input]` a line (RFC 3339, `YYYY-MM-DD HH:MM:SS` UTC,
    /// or UTC milliseconds).
    #[arg(long)]
    pub samples: PathBuf,
    /// A parameter for `init`, as `key=value` (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// How many inputs the output declares (default: the plugin's minimum).
    #[arg(long)]
    pub inputs: Option<u32>,
    /// The expected value: `12.5` for every window, `2020-01-01=12.5` for one day's window,
    /// `none` for no value (repeatable).
    #[arg(long, value_parser = crate::plugin_test::parse_expectation)]
    pub expect: Vec<crate::plugin_test::Expectation>,
    #[command(flatten)]
    pub limits: PluginLimitArgs,
}

/// The limits a plugin tool runs a plugin under (the host's defaults unless given).
#[derive(Debug, clap::Args)]
pub struct PluginLimitArgs {
    /// Fuel one call may burn (0: no bound).
    #[arg(long, default_value_t = defaults::FUEL_PER_CALL)]
    pub fuel_per_call: u64,
    /// Memory one instance may grow to, in MiB.
    #[arg(long, default_value_t = PluginLimits::DEFAULT_MAX_MEMORY_BYTES >> 20)]
    pub max_memory_mib: usize,
    /// Bytes one window's accumulator may have.
    #[arg(long, default_value_t = PluginLimits::DEFAULT_MAX_STATE_BYTES)]
    pub max_state_bytes: usize,
    /// The WASI the plugin gets: `deny-all` or `deterministic` (the tenant's `wasi`).
    #[arg(long, default_value = "deny-all", value_parser = parse_wasi)]
    pub wasi: WasiAccess,
}

impl PluginLimitArgs {
    pub fn limits(&self) -> PluginLimits {
        PluginLimits {
            fuel_per_call: (self.fuel_per_call > 0).then_some(self.fuel_per_call),
            max_memory_bytes: self.max_memory_mib << 20,
            max_state_bytes: self.max_state_bytes,
            wall_clock_per_call: None,
            wasi: self.wasi,
        }
    }
}

pub(super) fn parse_wasi(text: &str) -> Result<WasiAccess, String> {
    text.parse()
}

#[derive(Debug, clap::Args)]
pub struct RepartitionArgs {
    /// An input topic, `NAME` or `NAME:site=SITE` (the site of its line-format records;
    /// default: --default-site) or `NAME:site=key` (the record key is the site).
    /// Repeatable; JSON records always name their own site.
    #[arg(long = "from", required = true)]
    pub inputs: Vec<String>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = defaults::KAFKA)]
    pub kafka: String,
    /// The topic the host reads.
    #[arg(long = "to", default_value = defaults::READINGS_TOPIC)]
    pub output_topic: String,
    #[arg(long, default_value = defaults::DEAD_LETTER_TOPIC)]
    pub dead_letter_topic: String,
    /// The stage's own consumer group (not the host's).
    #[arg(long, default_value = defaults::REPARTITION_GROUP)]
    pub group: String,
    /// Static group membership id (`group.instance.id`): give each instance its own.
    #[arg(long)]
    pub instance_id: Option<String>,
    /// Prefix of the transactional ids (one per assigned partition set); default: the
    /// group.
    #[arg(long)]
    pub transactional_id_prefix: Option<String>,
    /// Site of line-format records of topics without a `site=` option.
    #[arg(long, default_value = defaults::DEFAULT_SITE)]
    pub default_site: String,
    /// How long a transaction stays open at most, e.g. `100ms`.
    #[arg(long, default_value = "100ms")]
    pub commit_interval: String,
    /// Records per transaction, at most.
    #[arg(long, default_value_t = crate::repartition::DEFAULT_MAX_RECORDS_PER_TRANSACTION)]
    pub max_records_per_transaction: usize,
    /// How long the broker keeps a vanished instance's transaction open, e.g. `15s`.
    #[arg(long, default_value = "15s")]
    pub transaction_timeout: String,
    #[arg(long, default_value = defaults::SESSION_TIMEOUT)]
    pub session_timeout: String,
    /// Records larger than this many bytes are dead-lettered.
    #[arg(long, default_value_t = defaults::MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Exit once every input partition is read to its end and committed.
    #[arg(long)]
    pub exit_when_caught_up: bool,
}

impl RepartitionArgs {
    pub fn into_config(self) -> anyhow::Result<crate::repartition::RepartitionConfig> {
        let inputs = self
            .inputs
            .iter()
            .map(|text| crate::repartition::InputTopic::parse(text, &self.default_site))
            .collect::<Result<Vec<_>, String>>()
            .map_err(anyhow::Error::msg)?;
        Ok(crate::repartition::RepartitionConfig {
            transactional_id_prefix: self
                .transactional_id_prefix
                .unwrap_or_else(|| self.group.clone()),
            kafka: self.kafka,
            group: self.group,
            instance_id: self.instance_id,
            inputs,
            output_topic: self.output_topic,
            dead_letter_topic: self.dead_letter_topic,
            commit_interval: parse_duration(&self.commit_interval).context("--commit-interval")?,
            max_records_per_transaction: self.max_records_per_transaction.max(1),
            transaction_timeout: parse_duration(&self.transaction_timeout)
                .context("--transaction-timeout")?,
            session_timeout: parse_duration(&self.session_timeout).context("--session-timeout")?,
            max_record_bytes: self.max_record_bytes,
            exit_when_caught_up: self.exit_when_caught_up,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Plugin `.wasm` files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: PluginLimitArgs,
    /// A parameter for the probe's `init`, as `key=value` (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Samples in the probe window (spread over one day, values 1, 2, 3, ...).
    #[arg(long, default_value_t = 96)]
    pub samples: usize,
    /// Fold the probe's samples this many times into the window, in one instance, as a
    /// long-running host does: shows the fuel of the costliest call and where the
    /// instance's memory settles (a garbage-collected runtime grows its heap over many
    /// calls before it collects).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub calls: u32,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}
