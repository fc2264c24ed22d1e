//! The Grafana dashboard (`grafana/dashboards/iot-stream.json`) and `compose.yaml`, checked
//! against the real system.
//!
//! - Every panel's query is run the way the Redis data source runs it (`TS.MRANGE <from> <to>
//!   WITHLABELS FILTER …`, the dashboard's default time range, `$site` set to the test's
//!   site) on what the real host wrote for a four-day simulated run started at today's UTC
//!   midnight (what `docker compose up` starts): no panel may be empty, and each must name a
//!   series the host writes, with a Grafana unit that matches the series' `unit` label.
//! - The `site` variable's query and regex find the test's site.
//! - `compose.yaml` parses, mounts provisioning that exists in the repository, points the data
//!   source at its Redis service, and publishes the images and ports the README documents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use iot_host::pipeline::Pipeline;
use iot_protocol::{Kind, Sensor};
use iot_simulator::{publish, PublishConfig, SimConfig};
use serde_json::Value;
use system_tests::alarm_oracle;
use system_tests::fixture::{repo_root, Sink, TestScope};
use system_tests::harness::{run_host_observed_on, SystemTopics};
use system_tests::redis_read;

const DASHBOARD: &str = "grafana/dashboards/iot-stream.json";
const DATASOURCES: &str = "grafana/provisioning/datasources/redis.yaml";
const DASHBOARD_PROVIDERS: &str = "grafana/provisioning/dashboards/iot-stream.yaml";
const COMPOSE: &str = "compose.yaml";
const DAY_MS: i64 = 86_400_000;

// --- reading the dashboard -------------------------------------------------------------------

fn read_json(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// A YAML file as JSON values, with `<<` merge keys applied.
fn read_yaml(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"));
    yaml.apply_merge()
        .unwrap_or_else(|e| panic!("{relative}: bad merge key: {e}"));
    serde_json::to_value(&yaml).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// One query of one panel, as the dashboard JSON has it.
#[derive(Debug, Clone)]
struct PanelQuery {
    title: String,
    panel_type: String,
    unit: String,
    datasource_uid: String,
    query_type: String,
    command: String,
    /// The label filter with the dashboard's variables still in it.
    filter: String,
    key_name: String,
}

/// Every query of every panel (rows included), in dashboard order.
fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut panels = Vec::new();
    collect_panels(&dashboard["panels"], &mut panels);
    let mut out = Vec::new();
    for panel in panels {
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        for target in targets {
            let uid = target["datasource"]["uid"]
                .as_str()
                .or(panel["datasource"]["uid"].as_str())
                .unwrap_or_default();
            out.push(PanelQuery {
                title: text(&panel["title"]),
                panel_type: text(&panel["type"]),
                unit: text(&panel["fieldConfig"]["defaults"]["unit"]),
                datasource_uid: uid.to_owned(),
                query_type: text(&target["type"]),
                command: text(&target["command"]).to_lowercase(),
                filter: text(&target["filter"]),
                key_name: text(&target["keyName"]),
            });
        }
    }
    out
}

fn collect_panels(panels: &Value, out: &mut Vec<Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            collect_panels(&panel["panels"], out);
        } else {
            out.push(panel.clone());
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The filter's `label=value` matchers, split the way the data source splits them
/// (shell words).
fn filter_matchers(filter: &str) -> Vec<String> {
    shell_words(filter)
}

fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {text:?}");
    if in_word {
        words.push(word);
    }
    words
}

/// The equality matchers of a filter as label → value.
fn equality_matchers(filter: &str) -> BTreeMap<String, String> {
    filter_matchers(filter)
        .into_iter()
        .filter_map(|m| {
            let (label, value) = m.split_once('=')?;
            (!label.ends_with('!')).then(|| (label.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Grafana's template substitution for the one variable the dashboard has.
fn substitute_site(text: &str, site: &str) -> String {
    text.replace("${site}", site)
        .replace("[[site]]", site)
        .replace("$site", site)
}

/// The Grafana unit a series' `unit` label stands for.
fn grafana_unit(redis_unit: &str) -> &'static str {
    match redis_unit {
        "degC" => "celsius",
        "Wh" => "watth",
        "L" => "litre",
        "count" => "none",
        other => panic!("no Grafana unit known for the series unit {other:?}"),
    }
}

/// A Grafana relative time (`now`, `now-10d`, `now+30d`, `now/d`, `now-1d/d`) in ms.
fn resolve_relative_time(expr: &str, now_ms: i64) -> i64 {
    let rest = expr
        .strip_prefix("now")
        .unwrap_or_else(|| panic!("time {expr:?}: only times relative to now are supported"));
    let (offset, round) = match rest.split_once('/') {
        Some((offset, round)) => (offset, Some(round)),
        None => (rest, None),
    };
    let mut t = now_ms;
    if !offset.is_empty() {
        let sign = match &offset[..1] {
            "+" => 1,
            "-" => -1,
            _ => panic!("time {expr:?}: expected now+N or now-N"),
        };
        let body = &offset[1..];
        let split = body
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or_else(|| panic!("time {expr:?}: no unit"));
        let n: i64 = body[..split].parse().expect("a number");
        t += sign * n * unit_ms(&body[split..], expr);
    }
    if let Some(round) = round {
        let unit = unit_ms(round, expr);
        t = t.div_euclid(unit) * unit;
    }
    t
}

fn unit_ms(unit: &str, expr: &str) -> i64 {
    match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        other => panic!("time {expr:?}: unit {other:?} is not supported here"),
    }
}

/// The panels SPEC §7 asks for: (panel type, sensor, kind).
const REQUIRED_PANELS: [(&str, &str, &str); 10] = [
    ("timeseries", "TH1", "raw"),
    ("timeseries", "TH1", "AggDay"),
    ("table", "HVAC1", "raw"),
    ("table", "W1", "LateRej"),
    ("timeseries", "Etot", "raw"),
    ("timeseries", "Mov1", "raw"),
    ("timeseries", "HVAC1", "AggDay"),
    ("timeseries", "Wtot", "AggDayDiff"),
    ("timeseries", "Etot", "AggDayRest"),
    ("table", "TH1", "AggDay"),
];

// --- the dashboard on its own ----------------------------------------------------------------

#[test]
fn the_dashboard_has_every_panel_the_spec_asks_for_with_units_live_refresh_and_utc_time() {
    let dashboard = read_json(DASHBOARD);
    let datasources = read_yaml(DATASOURCES);
    let redis = datasources["datasources"]
        .as_array()
        .expect("datasources list")
        .iter()
        .find(|d| d["type"] == "redis-datasource")
        .expect("a redis-datasource data source is provisioned");
    let uid = text(&redis["uid"]);
    assert!(!uid.is_empty(), "the data source has a fixed uid");

    assert_eq!(dashboard["timezone"], "utc", "the time axis is UTC");
    let refresh = text(&dashboard["refresh"]);
    assert!(
        ["1s", "5s", "10s"].contains(&refresh.as_str()),
        "the dashboard refreshes live (every few seconds), not {refresh:?}"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let site = variables
        .iter()
        .find(|v| v["name"] == "site")
        .expect("a `site` variable");
    assert_eq!(
        site["current"]["value"], "s1",
        "the site variable defaults to s1"
    );
    assert_eq!(site["datasource"]["uid"], uid.as_str());

    let queries = panel_queries(&dashboard);
    assert!(!queries.is_empty());
    let mut present = BTreeSet::new();
    for q in &queries {
        assert_eq!(
            q.datasource_uid, uid,
            "{}: uses the provisioned data source",
            q.title
        );
        assert_eq!(
            q.query_type, "timeSeries",
            "{}: a RedisTimeSeries query",
            q.title
        );
        assert_eq!(
            q.command, "ts.mrange",
            "{}: finds its series by label",
            q.title
        );
        assert!(
            q.key_name.is_empty(),
            "{}: names no key (prefix-free)",
            q.title
        );
        let m = equality_matchers(&q.filter);
        if m.get("kind").map(String::as_str) == Some("Alarm") {
            // Every rule's alarms of the site: the series carry their own units.
            assert_eq!(
                m.keys().map(String::as_str).collect::<Vec<_>>(),
                ["kind", "site"],
                "{}: the alarms panel's filter {:?} is site=$site kind=Alarm",
                q.title,
                q.filter
            );
            assert_eq!(m["site"], "$site", "{}: follows the site variable", q.title);
            assert_eq!(q.unit, "none", "{}: several units, so none", q.title);
            present.insert((q.panel_type.clone(), String::new(), "Alarm".to_owned()));
            continue;
        }
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["kind", "sensor", "site"],
            "{}: filter {:?} is site=$site sensor=X kind=Y",
            q.title,
            q.filter
        );
        assert_eq!(m["site"], "$site", "{}: follows the site variable", q.title);
        let sensor: Sensor = m["sensor"]
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", q.title));
        assert!(
            Kind::parse(&m["kind"]).is_some(),
            "{}: kind {:?}",
            q.title,
            m["kind"]
        );
        assert_eq!(
            q.unit,
            grafana_unit(sensor.unit()),
            "{}: the panel's unit fits {}",
            q.title,
            sensor.unit()
        );
        present.insert((q.panel_type.clone(), m["sensor"].clone(), m["kind"].clone()));
    }
    for (panel_type, sensor, kind) in REQUIRED_PANELS {
        assert!(
            present.contains(&(panel_type.to_owned(), sensor.to_owned(), kind.to_owned())),
            "the dashboard has a {panel_type} panel of {kind} {sensor}"
        );
    }
    assert!(
        present.contains(&("timeseries".to_owned(), String::new(), "Alarm".to_owned())),
        "the dashboard has a timeseries panel of the site's alarms"
    );
}

// --- the dashboard on a real run -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_shows_data_of_a_four_day_run_and_names_only_series_the_host_writes()
{
    dashboard_panels_show_a_four_day_run(Sink::Redis).await;
}

/// On a Redis Cluster each shard's index holds only its own series, so every query is asked
/// of every master and the answers merged, as a Grafana "Mixed" panel over one data source
/// per master does (README, "Redis Cluster"); the host's keys tag the site, so the site
/// variable's regex finds it in either layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_every_dashboard_panel_asked_of_every_shard_shows_the_run() {
    dashboard_panels_show_a_four_day_run(Sink::RedisCluster).await;
}

async fn dashboard_panels_show_a_four_day_run(sink: Sink) {
    let dashboard = read_json(DASHBOARD);
    let mut scope = TestScope::on("dashboard_panels", sink);
    let topics = SystemTopics::create(&mut scope, 1).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();

    // What `docker compose up` runs, compressed: one site from today's UTC midnight.
    let start_ms = iot_simulator::clock::today_utc_midnight();
    let sim = SimConfig {
        sites: 1,
        seed: 42,
        start_ms,
        days: Some(4),
        site_prefix: format!("{}-s", scope.id),
    };
    let site = format!("{}-s1", scope.id);
    let report = publish(
        PublishConfig::fast(&bootstrap, &topics.readings, sim),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(
        report.failure.is_none(),
        "simulator failed: {:?}",
        report.failure
    );
    // The reference pipeline with the shipped alarm rules, as `scripts/run-local` runs it.
    let pipeline = Pipeline::parse(&alarm_oracle::reference_with_shipped_alarms()).unwrap();
    let stats = run_host_observed_on(&scope, &topics, 2000, &mut (), Arc::new(pipeline)).await;
    assert_eq!(
        stats.records, report.acknowledged,
        "the host read every reading"
    );

    let mut conn = scope.redis_conn().await;
    let prefix = scope.key_prefix();
    let stored = redis_read::all_series(&mut conn, &prefix).await;
    let written: BTreeMap<(String, String), usize> = stored
        .iter()
        .filter(|((s, _, _), _)| *s == site)
        .map(|((_, sensor, kind), values)| ((sensor.clone(), kind.clone()), values.len()))
        .collect();
    assert!(!written.is_empty(), "the host wrote series for {site}");

    // The dashboard's default time range, as Grafana would resolve it now.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let from = resolve_relative_time(
        dashboard["time"]["from"].as_str().expect("time.from"),
        now_ms,
    );
    let to = resolve_relative_time(dashboard["time"]["to"].as_str().expect("time.to"), now_ms);
    assert!(from < to);

    let mut report_lines = Vec::new();
    let mut failures = Vec::new();
    for q in panel_queries(&dashboard) {
        let filter = substitute_site(&q.filter, &site);
        if filter.contains('$') {
            failures.push(format!("{}: unresolved variable in {filter:?}", q.title));
            continue;
        }
        let m = equality_matchers(&filter);
        let kind = m["kind"].clone();
        // The alarms panel shows every rule's series (`sensor` = the rule's output).
        let sensor = m.get("sensor").cloned();
        let shown = sensor.clone().unwrap_or_else(|| "(every rule)".to_owned());
        let stored_count = match &sensor {
            Some(sensor) => written.get(&(sensor.clone(), kind.clone())).copied(),
            None => Some(
                written
                    .iter()
                    .filter(|((_, k), _)| *k == kind)
                    .map(|(_, n)| n)
                    .sum::<usize>(),
            )
            .filter(|&n| n > 0),
        };
        let Some(stored_count) = stored_count else {
            failures.push(format!(
                "{}: names {kind} {shown}, a series the host does not write (it writes {:?})",
                q.title,
                written.keys().collect::<Vec<_>>()
            ));
            continue;
        };
        // Exactly what the data source sends for a ts.mrange query.
        let mut mrange = redis::cmd("TS.MRANGE");
        mrange
            .arg(from)
            .arg(to)
            .arg("WITHLABELS")
            .arg("FILTER")
            .arg(filter_matchers(&filter));
        let reply = redis::Value::Array(
            conn.query_every_shard(mrange)
                .await
                .unwrap_or_else(|e| panic!("{}: TS.MRANGE failed: {e}", q.title)),
        );
        let series = mrange_series(&reply);
        let samples: usize = series.iter().map(|s| s.samples).sum();
        report_lines.push(format!(
            "{:<55} {:<10} {kind:<12} {shown:<6} {} series, {samples} samples",
            q.title,
            q.panel_type,
            series.len()
        ));
        if samples == 0 {
            failures.push(format!("{}: empty in [{from}, {to}]", q.title));
            continue;
        }
        for s in &series {
            if !s.key.starts_with(&prefix) {
                failures.push(format!(
                    "{}: also shows {} (another prefix)",
                    q.title, s.key
                ));
            }
            if s.labels.get("site") != Some(&site)
                || sensor
                    .as_ref()
                    .is_some_and(|sensor| s.labels.get("sensor") != Some(sensor))
                || s.labels.get("kind") != Some(&kind)
            {
                failures.push(format!("{}: {} has labels {:?}", q.title, s.key, s.labels));
            }
            match s.labels.get("unit") {
                // Alarms of several rules, each in its own unit: the panel has none.
                _ if sensor.is_none() => {}
                Some(unit) if grafana_unit(unit) == q.unit => {}
                other => failures.push(format!(
                    "{}: panel unit {:?} but the series' unit label is {other:?}",
                    q.title, q.unit
                )),
            }
        }
        if samples != stored_count {
            failures.push(format!(
                "{}: the default time range shows {samples} of the {stored_count} stored samples",
                q.title
            ));
        }
    }
    eprintln!("panels on {site}:\n{}", report_lines.join("\n"));
    assert!(
        failures.is_empty(),
        "dashboard panels:\n{}",
        failures.join("\n")
    );

    // The site variable: its query, run as the data source runs it, and its regex.
    let variable = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "site")
        .unwrap()
        .clone();
    let words = shell_words(
        variable["query"]
            .as_str()
            .expect("the site variable's query"),
    );
    let mut variable_query = redis::cmd(&words[0]);
    variable_query.arg(&words[1..]);
    let keys: Vec<String> = conn
        .query_every_shard(variable_query)
        .await
        .expect("the site variable's query runs");
    let regex = grafana_regex(variable["regex"].as_str().unwrap_or_default());
    let sites: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| match &regex {
            Some(re) => re
                .captures(k)
                .map(|c| c.get(1).or(c.get(0)).unwrap().as_str().to_owned()),
            None => Some(k.clone()),
        })
        .collect();
    assert!(
        sites.contains(&site),
        "the site variable offers {site}; it found {} values",
        sites.len()
    );
}

/// A Grafana variable regex (`/pattern/flags`) as a Rust regex.
fn grafana_regex(text: &str) -> Option<regex::Regex> {
    if text.is_empty() {
        return None;
    }
    let body = text.strip_prefix('/').expect("a /regex/");
    let (pattern, flags) = body.rsplit_once('/').expect("a /regex/");
    let pattern = if flags.contains('i') {
        format!("(?i){pattern}")
    } else {
        pattern.to_owned()
    };
    Some(regex::Regex::new(&pattern).expect("the variable's regex compiles"))
}

struct MrangeSeries {
    key: String,
    labels: BTreeMap<String, String>,
    samples: usize,
}

/// A `TS.MRANGE … WITHLABELS` reply (RESP2): `[[key, [[label, value]…], [[ts, value]…]]…]`.
fn mrange_series(reply: &redis::Value) -> Vec<MrangeSeries> {
    as_array(reply)
        .iter()
        .map(|entry| {
            let parts = as_array(entry);
            let labels = as_array(&parts[1])
                .iter()
                .map(|kv| {
                    let kv = as_array(kv);
                    (bulk(&kv[0]), bulk(&kv[1]))
                })
                .collect();
            MrangeSeries {
                key: bulk(&parts[0]),
                labels,
                samples: as_array(&parts[2]).len(),
            }
        })
        .collect()
}

fn as_array(v: &redis::Value) -> &[redis::Value] {
    match v {
        redis::Value::Array(items) => items,
        other => panic!("expected an array in the TS.MRANGE reply, got {other:?}"),
    }
}

fn bulk(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

// --- compose.yaml ----------------------------------------------------------------------------

/// What the README's Docker section documents: service, image (without tag), published
/// port on the Docker host.
const DOCUMENTED: [(&str, &str, u16); 4] = [
    ("kafka", "apache/kafka", 9092),
    ("redis", "redis/redis-stack-server", 6379),
    ("grafana", "grafana/grafana", 3000),
    ("host", "iot-stream", 8080),
];

fn compose() -> Value {
    read_yaml(COMPOSE)
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let s = &compose["services"][name];
    assert!(s.is_object(), "compose.yaml has a `{name}` service");
    s
}

/// The service's command as words, whether written as a list or a string.
fn command_words(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(items) => items.iter().map(text).collect(),
        Value::String(s) => shell_words(s),
        _ => Vec::new(),
    }
}

/// Published host ports → container ports of a service (short syntax `"H:C"` or
/// `"IP:H:C"`, or long syntax).
fn published_ports(service: &Value) -> BTreeMap<u16, u16> {
    let mut out = BTreeMap::new();
    for p in service["ports"].as_array().into_iter().flatten() {
        match p {
            Value::String(s) => {
                let s = s.split('/').next().unwrap();
                let parts: Vec<&str> = s.split(':').collect();
                assert!(
                    parts.len() >= 2,
                    "port {s:?} is published on a fixed host port"
                );
                let host = parts[parts.len() - 2].parse().expect("host port");
                let container = parts[parts.len() - 1].parse().expect("container port");
                out.insert(host, container);
            }
            Value::Object(_) => {
                let host = p["published"]
                    .as_u64()
                    .or_else(|| p["published"].as_str().and_then(|s| s.parse().ok()))
                    .expect("published port") as u16;
                out.insert(host, p["target"].as_u64().expect("target port") as u16);
            }
            other => panic!("unexpected port entry {other:?}"),
        }
    }
    out
}

/// Bind mounts of a service as (host path relative to the repo, container path).
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in service["volumes"].as_array().into_iter().flatten() {
        match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                if parts[0].starts_with('.') || parts[0].starts_with('/') {
                    out.push((parts[0].to_owned(), parts[1].to_owned()));
                }
            }
            Value::Object(_) if v["type"] == "bind" => {
                out.push((text(&v["source"]), text(&v["target"])));
            }
            _ => {}
        }
    }
    out
}

fn flag_value(words: &[String], flag: &str) -> Option<String> {
    words
        .iter()
        .position(|w| w == flag)
        .and_then(|i| words.get(i + 1).cloned())
        .or_else(|| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(&format!("{flag}=")).map(str::to_owned))
        })
}

#[test]
fn compose_yaml_parses_and_mounts_grafana_provisioning_that_exists_in_the_repository() {
    let compose = compose();
    let root = repo_root();
    for name in ["kafka", "topics", "redis", "grafana", "host", "simulator"] {
        service(&compose, name);
    }

    // Grafana: the Redis plugin, and provisioning mounted from the repository.
    let grafana = service(&compose, "grafana");
    let env = &grafana["environment"];
    let plugins = match env {
        Value::Object(_) => text(&env["GF_INSTALL_PLUGINS"]),
        Value::Array(items) => items
            .iter()
            .filter_map(|e| {
                e.as_str()?
                    .strip_prefix("GF_INSTALL_PLUGINS=")
                    .map(str::to_owned)
            })
            .next()
            .unwrap_or_default(),
        _ => String::new(),
    };
    assert!(
        plugins
            .split(',')
            .any(|p| p.trim().starts_with("redis-datasource")),
        "Grafana installs redis-datasource (GF_INSTALL_PLUGINS={plugins:?})"
    );
    let mounts = bind_mounts(grafana);
    let mut container_to_repo: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (host, container) in &mounts {
        let path = root.join(host.trim_start_matches("./"));
        assert!(
            path.exists(),
            "the Grafana mount {host} ({}) exists in the repository",
            path.display()
        );
        container_to_repo.insert(container.clone(), path);
    }
    let provisioning = container_to_repo
        .get("/etc/grafana/provisioning")
        .expect("grafana/provisioning is mounted at /etc/grafana/provisioning");
    assert!(provisioning.join("datasources").is_dir());
    assert!(provisioning.join("dashboards").is_dir());
    assert_eq!(
        provisioning.canonicalize().unwrap(),
        root.join("grafana/provisioning").canonicalize().unwrap()
    );

    // Each dashboards provider reads a folder that is mounted and holds the dashboard.
    let providers = read_yaml(DASHBOARD_PROVIDERS);
    let dashboard_file = Path::new(DASHBOARD).file_name().unwrap();
    let mut found_dashboard = false;
    for provider in providers["providers"].as_array().expect("providers") {
        let path = text(&provider["options"]["path"]);
        let repo_dir = container_to_repo
            .iter()
            .find_map(|(container, repo)| {
                Path::new(&path)
                    .strip_prefix(container)
                    .ok()
                    .map(|rest| repo.join(rest))
            })
            .unwrap_or_else(|| panic!("the provider's folder {path} is mounted into Grafana"));
        assert!(repo_dir.is_dir(), "{} is a folder", repo_dir.display());
        found_dashboard |= repo_dir.join(dashboard_file).is_file();
    }
    assert!(found_dashboard, "a provider loads {DASHBOARD}");
    // The home dashboard, when set, is one of the mounted files.
    if let Some(home) = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str() {
        let repo_file = container_to_repo
            .iter()
            .find_map(|(c, repo)| Path::new(home).strip_prefix(c).ok().map(|r| repo.join(r)))
            .unwrap_or_else(|| panic!("the home dashboard {home} is mounted"));
        assert!(repo_file.is_file(), "{} exists", repo_file.display());
    }

    // The data source points at the compose Redis service's port.
    let datasources = read_yaml(DATASOURCES);
    let ds = datasources["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "redis-datasource")
        .expect("a redis-datasource data source");
    let url = text(&ds["url"]);
    let address = url.trim_start_matches("redis://");
    let (ds_host, ds_port) = address.split_once(':').expect("url host:port");
    let ds_port: u16 = ds_port.trim_end_matches('/').parse().expect("a port");
    service(&compose, ds_host);
    assert_eq!(
        ds_port, 6379,
        "the data source uses Redis' port inside the network"
    );
    let dashboard = read_json(DASHBOARD);
    for q in panel_queries(&dashboard) {
        assert_eq!(q.datasource_uid, text(&ds["uid"]), "{}", q.title);
    }

    // The host and the simulator: built from docker/Dockerfile, flags as documented.
    for name in ["host", "simulator"] {
        let s = service(&compose, name);
        let dockerfile = s["build"]["dockerfile"]
            .as_str()
            .expect("built from a Dockerfile");
        let context = s["build"]["context"].as_str().unwrap_or(".");
        assert!(
            root.join(context).join(dockerfile).is_file(),
            "{name}: {context}/{dockerfile} exists"
        );
    }
    let host = command_words(service(&compose, "host"));
    assert_eq!(host.first().map(String::as_str), Some("iot-host"));
    assert_eq!(flag_value(&host, "--kafka").as_deref(), Some("kafka:9092"));
    assert_eq!(
        flag_value(&host, "--redis").as_deref(),
        Some("redis://redis:6379")
    );
    assert_eq!(
        flag_value(&host, "--plugins").as_deref(),
        Some("/app/plugins")
    );
    // The image writes it from host/pipelines (docker/Dockerfile): the alarm panel has data.
    assert_eq!(
        flag_value(&host, "--pipeline").as_deref(),
        Some("/app/pipeline.toml")
    );
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(
            "host/pipelines/reference.toml host/pipelines/alarms.toml > /out/pipeline.toml"
        ),
        "the image's pipeline is the reference one with the alarm rules"
    );
    let http = flag_value(&host, "--http").expect("the host serves its live page");
    let http_port: u16 = http.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        published_ports(service(&compose, "host"))
            .values()
            .any(|&c| c == http_port),
        "the live page's port {http_port} is published"
    );
    let simulator = command_words(service(&compose, "simulator"));
    assert_eq!(simulator.first().map(String::as_str), Some("iot-simulator"));
    assert_eq!(
        flag_value(&simulator, "--kafka").as_deref(),
        Some("kafka:9092")
    );
    assert_eq!(flag_value(&simulator, "--sites").as_deref(), Some("1"));
    assert!(
        flag_value(&simulator, "--days").is_none(),
        "the simulator runs in real time"
    );
}

#[test]
fn compose_yaml_publishes_the_images_and_ports_the_readme_documents() {
    let compose = compose();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = docker_section(&readme);
    for (name, image, port) in DOCUMENTED {
        let s = service(&compose, name);
        let actual_image = text(&s["image"]);
        assert!(
            actual_image == image || actual_image.starts_with(&format!("{image}:")),
            "{name} runs {image} (compose.yaml says {actual_image:?})"
        );
        let ports = published_ports(s);
        assert!(
            ports.contains_key(&port),
            "{name} is published on port {port} (compose.yaml: {ports:?})"
        );
        if let Some(section) = &section {
            assert!(
                section.contains(&actual_image),
                "the README's Docker section names the image {actual_image}"
            );
            assert!(
                section.contains(&port.to_string()),
                "the README's Docker section names {name}'s port {port}"
            );
        }
    }
    if section.is_none() {
        eprintln!("README.md has no Docker section yet: checked compose.yaml against the table in this test only");
    }
}

/// The README section whose heading mentions Docker, up to the next heading of its level
/// (lines inside code fences are never headings).
fn docker_section(readme: &str) -> Option<String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut in_fence = false;
    let heading: Vec<Option<usize>> = lines
        .iter()
        .map(|l| {
            if l.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return None;
            }
            let n = l.chars().take_while(|&c| c == '#').count();
            (!in_fence && n > 0 && l[n..].starts_with(' ')).then_some(n)
        })
        .collect();
    let start = (0..lines.len())
        .find(|&i| heading[i].is_some() && lines[i].to_lowercase().contains("docker"))?;
    let level = heading[start].unwrap();
    let end = (start + 1..lines.len())
        .find(|&i| heading[i].is_some_and(|n| n <= level))
        .unwrap_or(lines.len());
    Some(lines[start..end].join("\n"))
}
