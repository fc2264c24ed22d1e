//! Configuration: a TOML file (`--config`), overridden by flags and environment variables.
//! Every setting has a default that runs against the local stack of `scripts/stack up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use serde::Deserialize;

/// The aggregation host: Kafka readings → day windows through WASM plugins → RedisTimeSeries.
#[derive(Debug, Parser)]
#[command(name = "iot-host", version, about)]
pub struct Cli {
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
