//! The real host binary running live — hot swap on, not exiting when caught up — with a
//! plugin folder and pipeline file of the test's own, so tests can deploy builds and edit
//! the pipeline while it works, kill it, and restart it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{host_binary, plugin_dir, TestScope};
use crate::harness::SystemTopics;

/// The reference pipeline, as shipped.
pub const REFERENCE_PIPELINE: &str = include_str!("../../host/pipelines/reference.toml");
/// The plugins the reference pipeline names.
pub const REFERENCE_PLUGINS: [&str; 5] = ["sum", "mean", "count", "daily-diff", "rest"];

/// A test's deploy folder: `plugins/` and `pipeline.toml`, removed when dropped.
pub struct HostFiles {
    pub dir: PathBuf,
}

impl HostFiles {
    /// A folder with the built reference plugins and the reference pipeline.
    pub fn reference(scope: &TestScope) -> HostFiles {
        let files = HostFiles::empty(scope, "host");
        for name in REFERENCE_PLUGINS {
            files.deploy(name, &plugin_dir().join(format!("{name}.wasm")));
        }
        files.write_pipeline(REFERENCE_PIPELINE);
        files
    }

    /// An empty deploy folder named `<scope>-<name>`.
    pub fn empty(scope: &TestScope, name: &str) -> HostFiles {
        let dir = std::env::temp_dir().join(format!("{}-{name}", scope.id));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins")).expect("deploy folder");
        HostFiles { dir }
    }

    pub fn plugins(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    pub fn pipeline(&self) -> PathBuf {
        self.dir.join("pipeline.toml")
    }

    /// Deploys `component` as plugin `name` the documented safe way: write under a hidden
    /// temporary name, then rename.
    pub fn deploy(&self, name: &str, component: &Path) {
        let tmp = self.plugins().join(format!(".{name}.wasm.tmp"));
        std::fs::copy(component, &tmp)
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", component.display()));
        std::fs::rename(&tmp, self.plugins().join(format!("{name}.wasm"))).expect("rename");
    }

    /// Replaces the pipeline file (write, then rename).
    pub fn write_pipeline(&self, text: &str) {
        let tmp = self.dir.join(".pipeline.toml.tmp");
        std::fs::write(&tmp, text).expect("write pipeline");
        std::fs::rename(&tmp, self.pipeline()).expect("rename pipeline");
    }
}

impl Drop for HostFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running host process; killed when dropped.
pub struct LiveHost {
    child: Child,
    pub log: PathBuf,
    /// `http://<addr>` when started with `--http <addr>` (not `off`).
    http: Option<String>,
}

impl LiveHost {
    /// Starts the host on the test's topics and key prefix, its log appended to `log`.
    /// `args` adds or overrides flags (`--plugins`, `--pipeline`, `--tenants`, ...).
    pub fn start(scope: &TestScope, topics: &SystemTopics, log: &Path, args: &[&str]) -> LiveHost {
        LiveHost::start_member(scope, topics, log, Some("host-1"), args)
    }

    /// [`LiveHost::start`] as a group member of its own: `instance` gives it static
    /// membership (`--instance-id <scope>-<instance>`), `None` a dynamic one (it leaves the
    /// group at once when stopped).
    pub fn start_member(
        scope: &TestScope,
        topics: &SystemTopics,
        log: &Path,
        instance: Option<&str>,
        args: &[&str],
    ) -> LiveHost {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("host log file");
        let mut command = Command::new(host_binary());
        if let Some(instance) = instance {
            command.args(["--instance-id", &format!("{}-{instance}", scope.id)]);
        }
        let child = command
            .args(["--kafka", &scope.services.kafka_bootstrap])
            .args(["--redis", &scope.services.redis_url])
            .args(["--group", &format!("{}-host", scope.id)])
            .args(["--readings-topic", &topics.readings])
            .args(["--aggregates-topic", &topics.aggregates])
            .args(["--late-rejected-topic", &topics.late_rejected])
            .args(["--dead-letter-topic", &topics.dead_letter])
            .args(["--plugin-errors-topic", &topics.plugin_errors])
            .args(["--alarms-topic", &topics.alarms])
            .args(["--key-prefix", &scope.key_prefix()])
            .args(["--http", "off"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the host binary starts");
        let http = args
            .windows(2)
            .rev()
            .find(|pair| pair[0] == "--http")
            .map(|pair| pair[1])
            .filter(|addr| *addr != "off")
            .map(|addr| format!("http://{addr}"));
        LiveHost {
            child,
            log: log.to_owned(),
            http,
        }
    }

    /// The host's metrics now, if it was started with `--http` and answers.
    pub fn metrics(&self) -> Option<crate::metrics_scrape::Samples> {
        crate::metrics_scrape::scrape(self.http.as_deref()?)
    }

    /// The partitions the host holds now, by its log (`partitions assigned` after the last
    /// `partitions revoked`).
    pub fn assigned(&self) -> Vec<i32> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut held = Vec::new();
        for line in log.lines() {
            if line.contains("partitions revoked") {
                held.clear();
            } else if line.contains("partitions assigned") {
                held = partition_list(line);
            }
        }
        held.sort_unstable();
        held
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `count` log lines contain `needle`; panics (pointing at the log) if the
    /// host exits or `timeout` passes first.
    pub async fn wait_for_log(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log_count(needle) < count {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "the host did not log {needle:?} {count}× within {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("the host exited ({status}); see {}", self.log.display());
        }
    }

    /// Freezes the process (SIGSTOP) until [`resume`](Self::resume): nothing it does can
    /// happen in between, so a test can change the world under it.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} of the host failed");
    }

    /// Waits for the host to exit by itself (`--exit-when-caught-up`).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("waiting for the host")
    }

    /// The host process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ctrl-C, then waits for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        // Generous: the last batch may wait for a slow machine's Redis.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "the host stopped with {status}; see {}",
                    self.log.display()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the host did not stop on Ctrl-C; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `partitions=[0, 1, 2]` of a log line.
fn partition_list(line: &str) -> Vec<i32> {
    let Some(start) = line.find("partitions=[") else {
        return Vec::new();
    };
    let rest = &line[start + "partitions=[".len()..];
    let end = rest.find(']').unwrap_or(rest.len());
    rest[..end]
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

impl Drop for LiveHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
