//! The repartition stage as a process of its own (`iot-host repartition`), so a test can
//! kill it with SIGKILL at any instant.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{host_binary, TestScope};

/// A running stage; killed when dropped.
pub struct StageProcess {
    child: Child,
    pub log: PathBuf,
}

impl StageProcess {
    /// Starts the stage of the test's group `<scope>-repartition` reading `inputs`
    /// (`--from` values) into `output`, its bad records into `dead_letter`, its log
    /// appended to `log`. `args` adds flags.
    pub fn start(
        scope: &TestScope,
        inputs: &[String],
        output: &str,
        dead_letter: &str,
        log: &Path,
        args: &[&str],
    ) -> StageProcess {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("stage log file");
        let mut command = Command::new(host_binary());
        command
            .arg("repartition")
            .args(["--kafka", &scope.services.kafka_bootstrap])
            .args(["--group", &format!("{}-repartition", scope.id)])
            .args(["--to", output])
            .args(["--dead-letter-topic", dead_letter]);
        for input in inputs {
            command.args(["--from", input]);
        }
        let child = command
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the host binary starts");
        StageProcess {
            child,
            log: log.to_owned(),
        }
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `count` log lines contain `needle`; panics if the stage exits or
    /// `timeout` passes first.
    pub async fn wait_for_log(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log_count(needle) < count {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("the stage exited ({status}); see {}", self.log.display());
            }
            assert!(
                Instant::now() < deadline,
                "the stage did not log {needle:?} {count}× within {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics (pointing at the log) if the stage exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("the stage exited ({status}); see {}", self.log.display());
        }
    }

    /// Waits for the stage to exit by itself (`--exit-when-caught-up`).
    pub async fn wait(mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the stage did not catch up within {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The input partitions the stage holds now, by its log (the last
    /// `repartition assigned` line), as `topic:partition`.
    pub fn assigned(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let Some(line) = log
            .lines()
            .rev()
            .find(|l| l.contains("repartition assigned"))
        else {
            return Vec::new();
        };
        // partitions=[("topic", 0), ("topic", 1)]
        let Some(list) = line.split("partitions=[").nth(1) else {
            return Vec::new();
        };
        list.split("), (")
            .filter_map(|pair| {
                let pair = pair.trim_matches(|c| c == '(' || c == ')' || c == ']');
                let (topic, partition) = pair.rsplit_once(", ")?;
                Some(format!("{}:{}", topic.trim_matches('"'), partition.trim()))
            })
            .collect()
    }

    /// Ctrl-C: the stage commits what it handed on and exits; waits for that.
    pub async fn stop(mut self, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the stage did not stop on Ctrl-C within {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
