//! Configuration: a TOML file (`--config`), overridden by flags and environment variables.
//! Every setting has a default that runs against the local stack of `scripts/stack up`.
//!
//! - here: the host's own settings ([`Cli`] → [`HostConfig`]) and their [`defaults`];
//! - [`commands`]: the arguments of the subcommands (`validate`, `repartition`, `plugin`,
//!   `tap`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

use iot_protocol::time::StampConvention;

use crate::plugin::{PluginLimits, WasiAccess};
use crate::tenant::{load_tenants_file, SiteMatcher, TenantSpec};

pub mod commands;

use commands::parse_wasi;
pub use commands::{
    Command, PluginCommand, PluginLimitArgs, PluginNewArgs, PluginTestArgs, RepartitionArgs,
    TapArgs, ValidateArgs,
};

/// Every setting's default, shown by `iot-host --help` and used by the code: one place.
pub mod defaults {
    pub const KAFKA: &str = "127.0.0.1:19092";
    pub const GROUP: &str = "iot-host";
    /// The repartition stage's consumer group and transactional id prefix.
    pub const REPARTITION_GROUP: &str = "iot-repartition";
    pub const READINGS_TOPIC: &str = "readings";
    pub const AGGREGATES_TOPIC: &str = "aggregates";
    pub const LATE_REJECTED_TOPIC: &str = "late-rejected";
    pub const DEAD_LETTER_TOPIC: &str = "dead-letter";
    pub const PLUGIN_ERRORS_TOPIC: &str = "plugin-errors";
    pub const ALARMS_TOPIC: &str = "alarms";
    pub const COMMANDS_TOPIC: &str = "commands";
    pub const COMMAND_ACKS_TOPIC: &str = "command-acks";
    pub const REDIS: &str = "redis://127.0.0.1:16379";
    pub const KEY_PREFIX: &str = iot_protocol::series::DEFAULT_KEY_PREFIX;
    pub const PLUGINS: &str = "target/plugins";
    pub const DEFAULT_SITE: &str = "default";
    /// SPEC §2: readings stamped at the end of their interval.
    pub const STAMPS: &str = "interval-end";
    /// SPEC §3.
    pub const ALLOWED_LATENESS: &str = "2d";
    pub const OUT_OF_ORDERNESS: &str = "0s";
    pub const MAX_RECORD_BYTES: usize = iot_protocol::record::DEFAULT_MAX_RECORD_BYTES;
    /// Records per batch: large enough to amortise a Redis transaction, small enough that
    /// a batch is stored within tens of milliseconds.
    pub const BATCH_SIZE: usize = 5000;
    pub const MAX_BATCHES_IN_FLIGHT: usize = crate::runner::DEFAULT_MAX_IN_FLIGHT;
    pub const HTTP: &str = "127.0.0.1:8080";
    /// How long the group coordinator waits for a heartbeat before it gives a member's
    /// partitions to others (see `source::kafka::DEFAULT_SESSION_TIMEOUT`).
    pub const SESSION_TIMEOUT: &str = "30s";
    pub const FUEL_PER_CALL: u64 = crate::plugin::PluginLimits::DEFAULT_FUEL_PER_CALL;
    pub const MAX_MEMORY_MIB: usize = crate::plugin::PluginLimits::DEFAULT_MAX_MEMORY_BYTES >> 20;
    pub const MAX_STATE_BYTES: usize = crate::plugin::PluginLimits::DEFAULT_MAX_STATE_BYTES;
}

/// The aggregation host: Kafka readings → day windows through WASM plugins → RedisTimeSeries.
///
/// Every setting can also be given in a TOML file (`--config`, same names with
/// underscores); a flag or environment variable wins over the file, the file over the
/// default shown.
#[derive(Debug, Parser)]
#[command(name = "iot-host", version, about)]
#[command(args_conflicts_with_subcommands = true)]
// A flag given twice takes its last value (scripts and tests add to a base command line).
#[command(args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below (flags win over the file).
    #[arg(long, env = "IOT_HOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = defaults::KAFKA)]
    pub kafka: String,
    /// Consumer group; instances with the same group share the partitions.
    #[arg(long, default_value = defaults::GROUP)]
    pub group: String,
    /// Static group membership id (restarts resume without a rebalance); unique per
    /// instance. None by default (dynamic membership).
    #[arg(long, env = "IOT_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// A member silent this long (no heartbeat reached the broker) loses its partitions.
    /// Longer rides out a stalled or starved broker without a rebalance; shorter moves a
    /// crashed instance's partitions sooner (a restarted instance with the same
    /// `--instance-id` takes them back at once either way).
    #[arg(long, default_value = defaults::SESSION_TIMEOUT)]
    pub session_timeout: String,
    /// Input topic.
    #[arg(long, default_value = defaults::READINGS_TOPIC)]
    pub readings_topic: String,
    /// Topic of emitted daily values (an upsert log keyed by series and day).
    #[arg(long, default_value = defaults::AGGREGATES_TOPIC)]
    pub aggregates_topic: String,
    /// Topic of readings rejected as too late.
    #[arg(long, default_value = defaults::LATE_REJECTED_TOPIC)]
    pub late_rejected_topic: String,
    /// Topic of records that could not be read, with the reason.
    #[arg(long, default_value = defaults::DEAD_LETTER_TOPIC)]
    pub dead_letter_topic: String,
    /// Topic of plugin failures (held windows, quarantines, refused builds).
    #[arg(long, default_value = defaults::PLUGIN_ERRORS_TOPIC)]
    pub plugin_errors_topic: String,
    /// Topic of the alarms alarm rules raise (outputs of kind Alarm).
    #[arg(long, default_value = defaults::ALARMS_TOPIC)]
    pub alarms_topic: String,
    /// Topic the live page sends device commands to (key: site id).
    #[arg(long, default_value = defaults::COMMANDS_TOPIC)]
    pub commands_topic: String,
    /// Topic the devices acknowledge commands on; the live page shows them.
    #[arg(long, default_value = defaults::COMMAND_ACKS_TOPIC)]
    pub command_acks_topic: String,
    /// Redis with the TimeSeries module, or any node of a Redis Cluster whose masters all
    /// have it (keys are then laid out for the cluster: README, "Redis Cluster").
    #[arg(long, env = "REDIS_URL", default_value = defaults::REDIS)]
    pub redis: String,
    /// Prefix of every Redis key the host writes.
    #[arg(long, default_value = defaults::KEY_PREFIX)]
    pub key_prefix: String,
    /// Folder of plugin `.wasm` files (the file stem is the plugin's name in the pipeline).
    #[arg(long, env = "IOT_PLUGIN_DIR", default_value = defaults::PLUGINS)]
    pub plugins: PathBuf,
    /// Pipeline file. Default: the reference pipeline, compiled in.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Tenants file (groups of sites with their own plugins, pipeline and limits); without
    /// it one tenant owns every site and uses --plugins and --pipeline.
    #[arg(long, env = "IOT_TENANTS")]
    pub tenants: Option<PathBuf>,
    /// Fuel (≈ WebAssembly instructions) one plugin call may burn; 0 turns the bound off.
    /// Default for tenants that do not set their own.
    #[arg(long, default_value_t = defaults::FUEL_PER_CALL)]
    pub fuel_per_call: u64,
    /// Wall-clock time one plugin call may take, in ms (epoch interruption, 10 ms
    /// resolution); 0 (the default) sets no such bound. Not deterministic, unlike fuel: a
    /// call near the bound may fail on one run and pass on a replay. Default for tenants
    /// that do not set their own.
    #[arg(long, default_value_t = 0)]
    pub wall_clock_per_call_ms: u64,
    /// Memory one plugin instance may grow to, in MiB. Default for tenants that do not set
    /// their own.
    #[arg(long, default_value_t = defaults::MAX_MEMORY_MIB)]
    pub max_memory_mib: usize,
    /// Bytes one window's accumulator may have (what `init` and `fold` return); a plugin
    /// over it fails like a trap. Default for tenants that do not set their own.
    #[arg(long, default_value_t = defaults::MAX_STATE_BYTES)]
    pub max_state_bytes: usize,
    /// The WASI plugins get: `deny-all` (none: a plugin importing clocks, randomness or
    /// files is refused) or `deterministic` (fixed clocks, a fixed-seed random source, no
    /// directory; for runtimes that import them). Default for tenants that do not set their
    /// own.
    #[arg(long, default_value = "deny-all", value_parser = parse_wasi)]
    pub wasi: WasiAccess,
    /// Do not watch plugin folders and pipeline files (no hot swap).
    #[arg(long)]
    pub no_watch: bool,
    /// Site of records in the plain line format.
    #[arg(long, default_value = defaults::DEFAULT_SITE)]
    pub default_site: String,
    /// How the producers of the readings topic stamp a 15-minute reading: at the end of
    /// its interval (`interval-end`: day D is (D 00:00, D+1 00:00], outputs stored at
    /// D+1 00:00) or at its start (`interval-start`: day D is [D 00:00, D 23:45], outputs
    /// stored at D 00:00). See the README's "Time" section.
    #[arg(long, default_value = defaults::STAMPS)]
    pub stamps: StampConvention,
    /// How late a reading may be and still be folded in, e.g. `2d`, `36h`, `90m`.
    #[arg(long, default_value = defaults::ALLOWED_LATENESS)]
    pub allowed_lateness: String,
    /// Watermark = newest reading − this bound, e.g. `0s`, `15m`.
    #[arg(long, default_value = defaults::OUT_OF_ORDERNESS)]
    pub out_of_orderness: String,
    /// How long RedisTimeSeries keeps `raw` series, e.g. `30d` (`0`: forever). Must exceed
    /// the allowed lateness plus the out-of-orderness plus a day, or Redis would refuse
    /// readings the host still files under `raw`. Late and rejected readings, daily
    /// outputs and alarms are always kept.
    #[arg(long, default_value = "0")]
    pub raw_retention: String,
    /// Records larger than this many bytes are dead-lettered.
    #[arg(long, default_value_t = defaults::MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Records per batch (one Redis transaction per batch).
    #[arg(long, default_value_t = defaults::BATCH_SIZE)]
    pub batch_size: usize,
    /// Batches folded ahead of the one being written to Redis; the host waits for Redis
    /// when this many are waiting (it bounds memory and what a crash re-reads). 0: no
    /// overlap, each batch durable before the next is read.
    #[arg(long, default_value_t = defaults::MAX_BATCHES_IN_FLIGHT)]
    pub max_batches_in_flight: usize,
    /// Address of the live page, or `off`.
    #[arg(long, env = "IOT_HTTP", default_value = defaults::HTTP)]
    pub http: String,
    /// Exit once every assigned partition is read to its end.
    #[arg(long)]
    pub exit_when_caught_up: bool,
}

impl Cli {
    /// Parses the command line, remembering which settings it (or the environment) gave:
    /// those win over the `--config` file, the defaults do not.
    pub fn parse_with_sources() -> (Cli, ArgMatches) {
        let matches = Cli::command().get_matches();
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        (cli, matches)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    kafka: Option<String>,
    group: Option<String>,
    instance_id: Option<String>,
    session_timeout: Option<String>,
    readings_topic: Option<String>,
    aggregates_topic: Option<String>,
    late_rejected_topic: Option<String>,
    dead_letter_topic: Option<String>,
    plugin_errors_topic: Option<String>,
    alarms_topic: Option<String>,
    commands_topic: Option<String>,
    command_acks_topic: Option<String>,
    redis: Option<String>,
    key_prefix: Option<String>,
    plugins: Option<PathBuf>,
    pipeline: Option<PathBuf>,
    tenants: Option<PathBuf>,
    fuel_per_call: Option<u64>,
    wall_clock_per_call_ms: Option<u64>,
    max_memory_mib: Option<usize>,
    max_state_bytes: Option<usize>,
    wasi: Option<String>,
    default_site: Option<String>,
    stamps: Option<StampConvention>,
    allowed_lateness: Option<String>,
    out_of_orderness: Option<String>,
    raw_retention: Option<String>,
    max_record_bytes: Option<usize>,
    batch_size: Option<usize>,
    max_batches_in_flight: Option<usize>,
    http: Option<String>,
}

/// Settings after merging defaults, file and flags.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub kafka: String,
    pub group: String,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub readings_topic: String,
    pub aggregates_topic: String,
    pub late_rejected_topic: String,
    pub dead_letter_topic: String,
    pub plugin_errors_topic: String,
    pub alarms_topic: String,
    pub commands_topic: String,
    pub command_acks_topic: String,
    pub redis: String,
    pub key_prefix: String,
    pub plugins: PathBuf,
    pub pipeline: Option<PathBuf>,
    pub tenants: Option<PathBuf>,
    /// Limits of tenants that do not set their own.
    pub limits: PluginLimits,
    pub watch: bool,
    pub default_site: String,
    pub stamps: StampConvention,
    pub allowed_lateness: Duration,
    pub out_of_orderness: Duration,
    /// `None`: raw series are kept forever.
    pub raw_retention: Option<Duration>,
    pub max_record_bytes: usize,
    pub batch_size: usize,
    pub max_batches_in_flight: usize,
    /// Where the live page listens; `None` when `--http off`.
    pub http: Option<std::net::SocketAddr>,
    pub exit_when_caught_up: bool,
}

impl HostConfig {
    /// Merges the command line (`matches` tells which settings it gave) over the
    /// `--config` file over the defaults.
    pub fn from_cli(cli: Cli, matches: &ArgMatches) -> anyhow::Result<HostConfig> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let fuel_per_call = pick(
            matches,
            "fuel_per_call",
            cli.fuel_per_call,
            file.fuel_per_call,
        );
        let wall_clock_per_call_ms = pick(
            matches,
            "wall_clock_per_call_ms",
            cli.wall_clock_per_call_ms,
            file.wall_clock_per_call_ms,
        );
        Ok(HostConfig {
            kafka: pick(matches, "kafka", cli.kafka, file.kafka),
            group: pick(matches, "group", cli.group, file.group),
            instance_id: cli.instance_id.or(file.instance_id),
            session_timeout: parse_duration(&pick(
                matches,
                "session_timeout",
                cli.session_timeout,
                file.session_timeout,
            ))
            .context("--session-timeout")?,
            readings_topic: pick(
                matches,
                "readings_topic",
                cli.readings_topic,
                file.readings_topic,
            ),
            aggregates_topic: pick(
                matches,
                "aggregates_topic",
                cli.aggregates_topic,
                file.aggregates_topic,
            ),
            late_rejected_topic: pick(
                matches,
                "late_rejected_topic",
                cli.late_rejected_topic,
                file.late_rejected_topic,
            ),
            dead_letter_topic: pick(
                matches,
                "dead_letter_topic",
                cli.dead_letter_topic,
                file.dead_letter_topic,
            ),
            plugin_errors_topic: pick(
                matches,
                "plugin_errors_topic",
                cli.plugin_errors_topic,
                file.plugin_errors_topic,
            ),
            alarms_topic: pick(matches, "alarms_topic", cli.alarms_topic, file.alarms_topic),
            commands_topic: pick(
                matches,
                "commands_topic",
                cli.commands_topic,
                file.commands_topic,
            ),
            command_acks_topic: pick(
                matches,
                "command_acks_topic",
                cli.command_acks_topic,
                file.command_acks_topic,
            ),
            redis: pick(matches, "redis", cli.redis, file.redis),
            key_prefix: pick(matches, "key_prefix", cli.key_prefix, file.key_prefix),
            plugins: pick(matches, "plugins", cli.plugins, file.plugins),
            pipeline: cli.pipeline.or(file.pipeline),
            tenants: cli.tenants.or(file.tenants),
            limits: PluginLimits {
                fuel_per_call: (fuel_per_call > 0).then_some(fuel_per_call),
                max_memory_bytes: pick(
                    matches,
                    "max_memory_mib",
                    cli.max_memory_mib,
                    file.max_memory_mib,
                ) << 20,
                max_state_bytes: pick(
                    matches,
                    "max_state_bytes",
                    cli.max_state_bytes,
                    file.max_state_bytes,
                ),
                wall_clock_per_call: (wall_clock_per_call_ms > 0)
                    .then(|| std::time::Duration::from_millis(wall_clock_per_call_ms)),
                wasi: pick(
                    matches,
                    "wasi",
                    cli.wasi,
                    file.wasi
                        .as_deref()
                        .map(parse_wasi)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("wasi in the config file: {e}"))?,
                ),
            },
            watch: !cli.no_watch,
            default_site: pick(matches, "default_site", cli.default_site, file.default_site),
            stamps: pick(matches, "stamps", cli.stamps, file.stamps),
            allowed_lateness: parse_duration(&pick(
                matches,
                "allowed_lateness",
                cli.allowed_lateness,
                file.allowed_lateness,
            ))
            .context("--allowed-lateness")?,
            out_of_orderness: parse_duration(&pick(
                matches,
                "out_of_orderness",
                cli.out_of_orderness,
                file.out_of_orderness,
            ))
            .context("--out-of-orderness")?,
            raw_retention: {
                let text = pick(
                    matches,
                    "raw_retention",
                    cli.raw_retention,
                    file.raw_retention,
                );
                Some(parse_duration(&text).context("--raw-retention")?)
                    .filter(|retention| !retention.is_zero())
            },
            max_record_bytes: pick(
                matches,
                "max_record_bytes",
                cli.max_record_bytes,
                file.max_record_bytes,
            ),
            batch_size: pick(matches, "batch_size", cli.batch_size, file.batch_size),
            max_batches_in_flight: pick(
                matches,
                "max_batches_in_flight",
                cli.max_batches_in_flight,
                file.max_batches_in_flight,
            ),
            http: parse_http(&pick(matches, "http", cli.http, file.http))?,
            exit_when_caught_up: cli.exit_when_caught_up,
        })
    }
}

impl HostConfig {
    /// `--raw-retention`, checked against the lateness: RedisTimeSeries refuses a sample
    /// older than its series' newest minus the retention, and a `raw` reading can be as old
    /// as the allowed lateness plus the out-of-orderness plus its day.
    pub fn checked_raw_retention(&self) -> anyhow::Result<Option<Duration>> {
        let Some(retention) = self.raw_retention else {
            return Ok(None);
        };
        let needed = self.allowed_lateness + self.out_of_orderness + Duration::from_secs(86_400);
        if retention <= needed {
            anyhow::bail!(
                "--raw-retention {}s is too short: raw readings may be up to the allowed \
                 lateness + the out-of-orderness + a day old ({}s), and RedisTimeSeries would \
                 refuse them; give at least {}d, or 0 to keep raw series forever",
                retention.as_secs(),
                needed.as_secs(),
                needed.as_secs() / 86_400 + 1
            );
        }
        Ok(Some(retention))
    }

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

/// The flag's value unless it is only the default; else the file's; else the default.
fn pick<T>(matches: &ArgMatches, id: &str, flag: T, file: Option<T>) -> T {
    let given = !matches!(
        matches.value_source(id),
        Some(ValueSource::DefaultValue) | None
    );
    if given {
        flag
    } else {
        file.unwrap_or(flag)
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

    fn config_from(args: &[&str]) -> HostConfig {
        let matches = Cli::command()
            .try_get_matches_from(args)
            .expect("valid arguments");
        let cli = Cli::from_arg_matches(&matches).unwrap();
        HostConfig::from_cli(cli, &matches).unwrap()
    }

    #[test]
    fn a_raw_retention_shorter_than_the_lateness_allows_is_refused() {
        assert_eq!(
            config_from(&["iot-host"]).checked_raw_retention().unwrap(),
            None
        );
        let month = config_from(&["iot-host", "--raw-retention", "30d"]);
        assert_eq!(
            month.checked_raw_retention().unwrap(),
            Some(Duration::from_secs(30 * 86_400))
        );
        // Defaults: 2 days of lateness + 0 out-of-orderness + a day.
        let err = config_from(&["iot-host", "--raw-retention", "3d"])
            .checked_raw_retention()
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 4d"), "{err}");
    }

    #[test]
    fn help_shows_the_default_of_every_setting_that_has_one() {
        let help = Cli::command().render_long_help().to_string();
        for default in [
            defaults::GROUP,
            defaults::READINGS_TOPIC,
            defaults::PLUGIN_ERRORS_TOPIC,
            defaults::ALLOWED_LATENESS,
            &defaults::BATCH_SIZE.to_string(),
            &defaults::FUEL_PER_CALL.to_string(),
            &defaults::MAX_MEMORY_MIB.to_string(),
            &defaults::MAX_STATE_BYTES.to_string(),
        ] {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "--help lacks the default {default}:\n{help}"
            );
        }
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let dir = std::env::temp_dir().join(format!("iot-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("host.toml");
        std::fs::write(
            &file,
            "group = \"from-file\"\nbatch_size = 77\nmax_state_bytes = 1024\n",
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();

        let from_file = config_from(&["iot-host", "--config", file_arg]);
        assert_eq!(from_file.group, "from-file");
        assert_eq!(from_file.batch_size, 77);
        assert_eq!(from_file.limits.max_state_bytes, 1024);
        assert_eq!(
            from_file.readings_topic,
            defaults::READINGS_TOPIC,
            "not in the file: the default"
        );

        let flagged = config_from(&[
            "iot-host",
            "--config",
            file_arg,
            "--group",
            "from-flag",
            "--batch-size",
            "5000",
        ]);
        assert_eq!(flagged.group, "from-flag");
        assert_eq!(
            flagged.batch_size, 5000,
            "a flag equal to the default still wins"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
