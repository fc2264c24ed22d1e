//! Services for tests: real Apache Kafka (KRaft) and Redis Stack with RedisTimeSeries.
//!
//! Versions are pinned in `scripts/versions.env`; `scripts/stack up` installs what is missing
//! and starts both, idempotently. [`services`] calls it once per test binary when a service
//! does not answer, so `cargo test` works on its own as well as under `scripts/test`.
//!
//! Each test takes a [`TestScope`]: its own topic names and Redis key prefix, deleted again
//! when the scope is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use iot_host::store::RedisReader;
use iot_protocol::series::KeyLayout;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

pub const DEFAULT_KAFKA_BOOTSTRAP: &str = "127.0.0.1:19092";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:16379";
/// A node of the local Redis Cluster (`scripts/redis-cluster up`, its default ports).
pub const DEFAULT_REDIS_CLUSTER_URL: &str = "redis://127.0.0.1:17001";

/// Where a test's host writes: the local Redis, or the local 3-master Redis Cluster. Tests
/// of the sink's guarantees run on both (a test matrix: one test body, one test per sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Redis,
    RedisCluster,
}

impl Sink {
    pub fn key_layout(self) -> KeyLayout {
        match self {
            Sink::Redis => KeyLayout::Single,
            Sink::RedisCluster => KeyLayout::Cluster,
        }
    }
}

/// Where the running services are.
#[derive(Debug, Clone)]
pub struct Services {
    pub kafka_bootstrap: String,
    pub redis_url: String,
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Folder of the built plugins (`scripts/build-plugins`).
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("IOT_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/plugins"))
}

/// The running services, started on first use if they do not answer.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let services = Services {
            kafka_bootstrap: std::env::var("KAFKA_BOOTSTRAP")
                .unwrap_or_else(|_| DEFAULT_KAFKA_BOOTSTRAP.to_owned()),
            redis_url: std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned()),
        };
        if !kafka_answers(&services.kafka_bootstrap) || !redis_answers(&services.redis_url) {
            start_stack();
            assert!(
                kafka_answers(&services.kafka_bootstrap),
                "Kafka does not answer at {} after `scripts/stack up`; see .stack/kafka.log",
                services.kafka_bootstrap
            );
            assert!(
                redis_answers(&services.redis_url),
                "Redis does not answer at {} after `scripts/stack up`; see .stack/redis.log",
                services.redis_url
            );
        }
        services
    })
}

/// The local Redis Cluster's URL (`REDIS_CLUSTER_URL`, else [`DEFAULT_REDIS_CLUSTER_URL`]),
/// started with `scripts/redis-cluster up` (idempotent) once per test binary.
pub fn redis_cluster_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = std::env::var("REDIS_CLUSTER_URL")
            .unwrap_or_else(|_| DEFAULT_REDIS_CLUSTER_URL.to_owned());
        run_up("redis-cluster");
        url
    })
}

/// Starts whatever of the local stack is not running (`scripts/stack up`, idempotent).
pub fn start_stack() {
    run_up("stack");
}

/// Runs `scripts/<name> up` (idempotent), failing the test if it fails.
fn run_up(name: &str) {
    let script = repo_root().join("scripts").join(name);
    let status = Command::new("bash")
        .arg(&script)
        .arg("up")
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        status.success(),
        "`scripts/{name} up` failed ({status}); its output above says what is missing"
    );
}

fn kafka_answers(bootstrap: &str) -> bool {
    let consumer: Result<rdkafka::consumer::BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create();
    match consumer {
        Ok(c) => {
            use rdkafka::consumer::Consumer;
            c.fetch_metadata(None, Duration::from_secs(3)).is_ok()
        }
        Err(_) => false,
    }
}

fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// A test's own names: topics `<id>.<name>` and the Redis key prefix `<id>:`.
/// Dropping it deletes the topics and every key under the prefix.
pub struct TestScope {
    pub id: String,
    /// Kafka, and the Redis of this scope's sink (`redis_url` is the cluster's for
    /// [`Sink::RedisCluster`]).
    pub services: Services,
    pub sink: Sink,
    topics: Vec<String>,
}

impl TestScope {
    /// A fresh scope named after the test (`name` should be the test function's name).
    pub fn new(name: &str) -> TestScope {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let id = format!(
            "t{}-{}-{n}-{nanos:x}",
            std::process::id(),
            name.replace('_', "-")
        );
        TestScope {
            id,
            services: services().clone(),
            sink: Sink::Redis,
            topics: Vec::new(),
        }
    }

    /// A fresh scope whose host writes to `sink` (the cluster is started if it is not
    /// running).
    pub fn on(name: &str, sink: Sink) -> TestScope {
        let mut scope = TestScope::new(name);
        if sink == Sink::RedisCluster {
            scope.services.redis_url = redis_cluster_url().to_owned();
            scope.sink = sink;
        }
        scope
    }

    /// How the host lays out keys on this scope's Redis.
    pub fn key_layout(&self) -> KeyLayout {
        self.sink.key_layout()
    }

    /// The key of a series, in this scope's layout (`kind` as its label value).
    pub fn series_key(&self, site: &str, sensor: &str, kind: &str) -> String {
        let kind = iot_protocol::Kind::parse(kind)
            .unwrap_or_else(|| panic!("{kind:?} is not a series kind"));
        iot_protocol::SeriesName::new(site, sensor, kind)
            .key_in(&self.key_prefix(), self.key_layout())
    }

    /// Where a partition's checkpoint is, in this scope's layout.
    pub fn checkpoint_key(&self, topic: &str, partition: i32) -> String {
        self.key_layout()
            .checkpoint_key(&self.key_prefix(), topic, partition)
    }

    /// Where a partition's owner epoch is, in this scope's layout.
    pub fn owner_key(&self, topic: &str, partition: i32) -> String {
        self.key_layout()
            .owner_key(&self.key_prefix(), topic, partition)
    }

    /// The Redis key prefix of this test.
    pub fn key_prefix(&self) -> String {
        format!("{}:", self.id)
    }

    /// A topic name of this test.
    pub fn topic_name(&self, name: &str) -> String {
        format!("{}.{name}", self.id)
    }

    /// Creates a topic of this test (deleted when the scope drops) and returns its name.
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> String {
        let topic = self.topic_name(name);
        let admin = admin(&self.services.kafka_bootstrap);
        let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create_topics call failed");
        for r in results {
            if let Err((t, e)) = r {
                panic!("cannot create topic {t}: {e}");
            }
        }
        self.topics.push(topic.clone());
        topic
    }

    pub fn redis(&self) -> redis::Client {
        redis::Client::open(self.services.redis_url.as_str()).expect("REDIS_URL is a valid URL")
    }

    /// Deletes every Redis key of this test now (the scope still deletes what is written
    /// later when dropped).
    pub async fn delete_keys(&self) {
        let (sink, url, prefix) = (
            self.sink,
            self.services.redis_url.clone(),
            self.key_prefix(),
        );
        tokio::task::spawn_blocking(move || delete_sink_keys(sink, &url, &prefix))
            .await
            .expect("deleting the test's keys");
    }

    /// A connection to this scope's Redis, one server or a cluster: commands on a key go
    /// to its shard; `query_every_shard` asks them all.
    pub async fn redis_conn(&self) -> RedisReader {
        RedisReader::connect(&self.services.redis_url)
            .await
            .expect("Redis connection")
    }
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("Kafka admin client")
}

impl Drop for TestScope {
    fn drop(&mut self) {
        if std::env::var_os("IOT_KEEP_TEST_DATA").is_some() {
            eprintln!(
                "keeping test data of {} (IOT_KEEP_TEST_DATA is set)",
                self.id
            );
            return;
        }
        delete_sink_keys(self.sink, &self.services.redis_url, &self.key_prefix());
        if !self.topics.is_empty() {
            delete_topics(&self.services.kafka_bootstrap, &self.topics);
        }
    }
}

fn delete_sink_keys(sink: Sink, url: &str, prefix: &str) {
    match sink {
        Sink::Redis => delete_keys(url, prefix),
        Sink::RedisCluster => delete_cluster_keys(url, prefix),
    }
}

fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap_or_default();
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

/// KEYS asks every master of a cluster connection; DEL is split by slot.
fn delete_cluster_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::cluster::ClusterClient::new(vec![url]) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = redis::cmd("DEL").arg(&key).query(&mut conn);
    }
}

fn delete_topics(bootstrap: &str, topics: &[String]) {
    // Drop may run outside a runtime: use a small one of our own.
    let topics = topics.to_vec();
    let bootstrap = bootstrap.to_owned();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            let _ = admin(&bootstrap)
                .delete_topics(&refs, &AdminOptions::new())
                .await;
        });
    })
    .join();
}

/// The host binary, built by `scripts/test` before the tests run (`IOT_HOST_BIN` overrides).
pub fn host_binary() -> PathBuf {
    let path = std::env::var_os("IOT_HOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/iot-host"));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p iot-host` (scripts/test does this first)",
        path.display()
    );
    path
}

/// A plugin component from the fixture workspace `host/tests/fixtures/` (hostile and
/// swap-test plugins), built once per test binary into `target/test-fixtures`.
pub fn fixture_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target_dir = repo_root().join("target/test-fixtures");
        let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(repo_root().join("host/tests/fixtures"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target_dir)
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "building the fixture plugins in host/tests/fixtures failed (is the wasm32-wasip2 \
             target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target_dir.join("wasm32-wasip2/release")
    });
    let path = dir.join(format!("fixture_{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "fixture plugin {} was not built",
        path.display()
    );
    path
}

/// A plugin written in another language (`lang` is `python` or `js`), as
/// `scripts/build-plugins --<lang>` installs it (the test command runs that before the tests).
pub fn other_language_plugin(lang: &str, name: &str) -> PathBuf {
    let path = plugin_dir().join(lang).join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build it with scripts/build-plugins --{lang} {name}",
        path.display()
    );
    path
}

/// A service of the local stack, for tests that take it away and bring it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalService {
    Kafka,
    Redis,
}

impl LocalService {
    /// The pid of the local stack's own process, from its pid file; `None` when the
    /// service is not ours (KAFKA_BOOTSTRAP / REDIS_URL point elsewhere) or not running.
    pub fn pid(self) -> Option<u32> {
        let stack_dir = std::env::var_os("IOT_STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".stack"));
        let file = match self {
            LocalService::Kafka => "kafka.pid",
            LocalService::Redis => "redis.pid",
        };
        let pid: u32 = std::fs::read_to_string(stack_dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// kill -9, then waits until the process is gone.
    pub fn kill9(self) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{self:?} of the local stack is not running"));
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid} ({self:?}) failed");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while process_alive(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{self:?} (pid {pid}) survived kill -9 for 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Pauses (SIGSTOP) every server of a sink: the local Redis, or each node of the local
/// Redis Cluster; continued when the returned guards drop.
pub fn pause_sink(sink: Sink) -> Vec<Paused> {
    match sink {
        Sink::Redis => vec![LocalService::Redis.pause()],
        Sink::RedisCluster => {
            let pids = redis_cluster_node_pids();
            assert!(!pids.is_empty(), "no node of the local Redis Cluster runs");
            pids.into_iter()
                .map(|pid| {
                    signal(pid, "-STOP");
                    Paused { pid }
                })
                .collect()
        }
    }
}

/// The pids of the local Redis Cluster's nodes (`scripts/redis-cluster`'s pid files).
fn redis_cluster_node_pids() -> Vec<u32> {
    let stack_dir = std::env::var_os("IOT_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".stack"));
    let ports = std::env::var("REDIS_CLUSTER_PORTS").unwrap_or_else(|_| "17001 17002 17003".into());
    ports
        .split_whitespace()
        .filter_map(|port| {
            let file = stack_dir.join("redis-cluster").join(format!("{port}.pid"));
            let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
            Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
        })
        .collect()
}

/// A local service stopped with SIGSTOP: it keeps its connections but answers nothing, as
/// a starved or stalled server would. Continued (SIGCONT) when dropped, also when the test
/// panics, so the services of the tests after it keep working.
pub struct Paused {
    pid: u32,
}

impl LocalService {
    pub fn pause(self) -> Paused {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{self:?} of the local stack is not running"));
        signal(pid, "-STOP");
        Paused { pid }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.pid, "-CONT");
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

fn process_alive(pid: u32) -> bool {
    // A zombie (killed, not yet reaped by its parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}
