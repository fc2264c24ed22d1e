//! A Prometheus server for a test (Debian's `prometheus` package, 2.x: `scripts/setup
//! --browser` installs it), scraping the targets the test names every second, with its own
//! data folder and port; stopped and removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::webdriver::free_port;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Generous: a slow machine only takes longer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub base: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second and
    /// waits until it answers.
    pub fn start(name: &str, targets: &[String]) -> Prometheus {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus (scripts/setup --browser does)"
        );
        let dir =
            std::env::temp_dir().join(format!("iot-prometheus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: iot-host\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let mut prometheus = Prometheus {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while ureq::get(&format!("{}/-/ready", self.base)).call().is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "prometheus exited ({status}); see {}",
                    self.dir.join("prometheus.log").display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not answer within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instant query: the result's series, or the error Prometheus gave.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let reply: Value = ureq::get(&format!("{}/api/v1/query", self.base))
            .query("query", expr)
            .call()
            .map_err(|e| format!("{expr}: {e}"))?
            .body_mut()
            .read_json()
            .map_err(|e| format!("{expr}: {e}"))?;
        if reply["status"] != "success" {
            return Err(format!("{expr}: {reply}"));
        }
        Ok(reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
