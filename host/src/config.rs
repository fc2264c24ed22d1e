//! Configuration: a TOML file (`--config`), overridden by flags and environment variables.
//! Every setting has a default that runs against the local stack of `scripts/stack up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use serde::Deserialize;

use crate::plugin::PluginLimits;
use crate::tenant::{load_tenants_file, SiteMatcher, TenantSpec};

/// The aggregation host: Kafka readings → day windows through WASM plugins → RedisTimeSeries.
#[derive(Debug, Parser)]
#[command(name = "iot-host", version, about)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below (flags win over the file).
    #[arg(long, env = "IOT_HOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub kafka: Option<String>,
    /// Consumer group; instances with the same group share the partitions.
    #[arg(long)]
    pub group: Option<String>,
    /// Static group membership id (restarts resume without a rebalance); unique per instance.
    #[arg(long, env = "IOT_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Input topic.
    #[arg(long)]
    pub readings_topic: Option<String>,
    #[arg(long)]
    pub aggregates_topic: Option<String>,
    #[arg(long)]
    pub late_rejected_topic: Option<String>,
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    #[arg(long)]
    pub plugin_errors_topic: Option<String>,
    /// Redis with the TimeSeries module.
    #[arg(long, env = "REDIS_URL")]
    pub redis: Option<String>,
    /// Prefix of every Redis key the host writes.
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// Folder of plugin `.wasm` files (the file stem is the plugin's name in the pipeline).
    #[arg(long, env = "IOT_PLUGIN_DIR")]
    pub plugins: Option<PathBuf>,
    /// Pipeline file; the reference site's pipeline when absent.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Tenants file (groups of sites with their own plugins, pipeline and limits); without
    /// it one tenant owns every site and uses --plugins and --pipeline.
    #[arg(long, env = "IOT_TENANTS")]
    pub tenants: Option<PathBuf>,
    /// Fuel (≈ WebAssembly instructions) one plugin call may burn; 0 turns the bound off.
    /// Default for tenants that do not set their own.
    #[arg(long)]
    pub fuel_per_call: Option<u64>,
    /// Memory one plugin instance may grow to, in MiB. Default for tenants that do not set
    /// their own.
    #[arg(long)]
    pub max_memory_mib: Option<usize>,
    /// Do not watch plugin folders and pipeline files (no hot swap).
    #[arg(long)]
    pub no_watch: bool,
    /// Site of records in the plain line format.
    #[arg(long)]
    pub default_site: Option<String>,
    /// How late a reading may be and still be folded in, e.g. `2d`, `36h`, `90m`.
    #[arg(long)]
    pub allowed_lateness: Option<String>,
    /// Watermark = newest reading − this bound, e.g. `0s`, `15m`.
    #[arg(long)]
    pub out_of_orderness: Option<String>,
    /// Records larger than this many bytes are dead-lettered.
    #[arg(long)]
    pub max_record_bytes: Option<usize>,
    /// Records per batch (one Redis transaction per batch).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Address of the live page, or `off`.
    #[arg(long, env = "IOT_HTTP")]
    pub http: Option<String>,
    /// Exit once every assigned partition is read to its end.
    #[arg(long)]
    pub exit_when_caught_up: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    kafka: Option<String>,
    group: Option<String>,
    instance_id: Option<String>,
    readings_topic: Option<String>,
    aggregates_topic: Option<String>,
    late_rejected_topic: Option<String>,
    dead_letter_topic: Option<String>,
    plugin_errors_topic: Option<String>,
    redis: Option<String>,
    key_prefix: Option<String>,
    plugins: Option<PathBuf>,
    pipeline: Option<PathBuf>,
    tenants: Option<PathBuf>,
    fuel_per_call: Option<u64>,
    max_memory_mib: Option<usize>,
    default_site: Option<String>,
    allowed_lateness: Option<String>,
    out_of_orderness: Option<String>,
    max_record_bytes: Option<usize>,
    batch_size: Option<usize>,
    http: Option<String>,
}

/// Settings after merging defaults, file and flags.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub kafka: String,
    pub group: String,
    pub instance_id: Option<String>,
    pub readings_topic: String,
    pub aggregates_topic: String,
    pub late_rejected_topic: String,
    pub dead_letter_topic: String,
    pub plugin_errors_topic: String,
    pub redis: String,
    pub key_prefix: String,
    pub plugins: PathBuf,
    pub pipeline: Option<PathBuf>,
    pub tenants: Option<PathBuf>,
    /// Limits of tenants that do not set their own.
    pub limits: PluginLimits,
    pub watch: bool,
    pub default_site: String,
    pub allowed_lateness: Duration,
    pub out_of_orderness: Duration,
    pub max_record_bytes: usize,
    pub batch_size: usize,
    /// Where the live page listens; `None` when `--http off`.
    pub http: Option<std::net::SocketAddr>,
    pub exit_when_caught_up: bool,
}

impl HostConfig {
    pub fn from_cli(cli: Cli) -> anyhow::Result<HostConfig> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let pick = |flag: Option<String>, file: Option<String>, default: &str| {
            flag.or(file).unwrap_or_else(|| default.to_owned())
        };
        Ok(HostConfig {
            kafka: pick(cli.kafka, file.kafka, "127.0.0.1:19092"),
            group: pick(cli.group, file.group, "iot-host"),
            instance_id: cli.instance_id.or(file.instance_id),
            readings_topic: pick(cli.readings_topic, file.readings_topic, "readings"),
            aggregates_topic: pick(cli.aggregates_topic, file.aggregates_topic, "aggregates"),
            late_rejected_topic: pick(
                cli.late_rejected_topic,
                file.late_rejected_topic,
                "late-rejected",
            ),
            dead_letter_topic: pick(cli.dead_letter_topic, file.dead_letter_topic, "dead-letter"),
            plugin_errors_topic: pick(
                cli.plugin_errors_topic,
                file.plugin_errors_topic,
                "plugin-errors",
            ),
            redis: pick(cli.redis, file.redis, "redis://127.0.0.1:16379"),
            key_prefix: pick(
                cli.key_prefix,
                file.key_prefix,
                iot_protocol::series::DEFAULT_KEY_PREFIX,
            ),
            plugins: cli
                .plugins
                .or(file.plugins)
                .unwrap_or_else(|| PathBuf::from("target/plugins")),
            pipeline: cli.pipeline.or(file.pipeline),
            tenants: cli.tenants.or(file.tenants),
            limits: PluginLimits {
                fuel_per_call: match cli.fuel_per_call.or(file.fuel_per_call) {
                    Some(0) => None,
                    Some(fuel) => Some(fuel),
                    None => Some(PluginLimits::DEFAULT_FUEL_PER_CALL),
                },
                max_memory_bytes: cli
                    .max_memory_mib
                    .or(file.max_memory_mib)
                    .map_or(PluginLimits::DEFAULT_MAX_MEMORY_BYTES, |mib| mib << 20),
            },
            watch: !cli.no_watch,
            default_site: pick(cli.default_site, file.default_site, "default"),
            allowed_lateness: parse_duration(&pick(
                cli.allowed_lateness,
                file.allowed_lateness,
                "2d",
            ))
            .context("--allowed-lateness")?,
            out_of_orderness: parse_duration(&pick(
                cli.out_of_orderness,
                file.out_of_orderness,
                "0s",
            ))
            .context("--out-of-orderness")?,
            max_record_bytes: cli
                .max_record_bytes
                .or(file.max_record_bytes)
                .unwrap_or(iot_protocol::record::DEFAULT_MAX_RECORD_BYTES),
            batch_size: cli.batch_size.or(file.batch_size).unwrap_or(5000),
            http: parse_http(&pick(cli.http, file.http, "127.0.0.1:8080"))?,
            exit_when_caught_up: cli.exit_when_caught_up,
        })
    }
}

impl HostConfig {
    /// The tenants: from the tenants file, or one tenant owning every site.
    pub fn tenant_specs(&self) -> anyhow::Result<Vec<TenantSpec>> {
        match &self.tenants {
            Some(path) => load_tenants_file(path, self.limits),
            None => Ok(vec![TenantSpec {
                name: "default".into(),
                sites: SiteMatcher::all(),
                plugin_dir: self.plugins.clone(),
                pipeline_file: self.pipeline.clone(),
                limits: self.limits,
            }]),
        }
    }
}

/// Subcommands; without one the host runs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Checks plugin components before deploying them: loads each against the WIT and the
    /// sandbox rules, prints its info, and runs a probe window (init, fold, finish) under
    /// the limits. Exits non-zero, saying why, if any plugin fails.
    Validate(ValidateArgs),
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Plugin `.wasm` files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Fuel one call may burn (0: no bound).
    #[arg(long, default_value_t = PluginLimits::DEFAULT_FUEL_PER_CALL)]
    pub fuel_per_call: u64,
    /// Memory one instance may grow to, in MiB.
    #[arg(long, default_value_t = PluginLimits::DEFAULT_MAX_MEMORY_BYTES >> 20)]
    pub max_memory_mib: usize,
    /// A parameter for the probe's `init`, as `key=value` (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Samples in the probe window (spread over one day, values 1, 2, 3, ...).
    #[arg(long, default_value_t = 96)]
    pub samples: usize,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

fn parse_http(text: &str) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).with_context(|| {
        format!("--http {text:?} is not an address like 127.0.0.1:8080 (or `off`)")
    })
}

/// `90s`, `15m`, `36h`, `2d`, or a plain number of milliseconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration like 2d, 36h, 15m, 90s"))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        other => anyhow::bail!("unknown duration unit {other:?} in {text:?}: use ms, s, m, h or d"),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("2 weeks").is_err());
    }
}
