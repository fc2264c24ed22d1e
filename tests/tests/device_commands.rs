//! Two-way control end to end, in a real browser: the live page of the real host binary
//! sends "switch HVAC1 off" through the `commands` topic; the simulator, running in real
//! time, obeys and acknowledges on `command-acks`; the page shows the command applied
//! without a reload; and the HVAC1 readings stored after the acknowledgement are 0 while
//! HVAC2's are not. A command the host refuses (an unknown device, another origin) sends
//! nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot_simulator::devices::CommandTopics;
use iot_simulator::{publish, Pace, PublishConfig, SimConfig};
use system_tests::fixture::{plugin_dir, repo_root, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::LiveHost;
use system_tests::redis_read;
use system_tests::topic::read_all;
use system_tests::webdriver::{free_port, Browser};

/// 2020-01-01T00:00:00Z, the simulated run's step 0.
const RUN_START_MS: i64 = 1_577_836_800_000;
/// Real time, sped up: about 260 readings a second for the one site.
const STEPS_PER_SECOND: f64 = 20.0;
/// Readings of HVAC1 after the acknowledgement that must all be 0.
const READINGS_AFTER_ACK: usize = 8;
/// Generous: the debug host and a browser on a busy two-core machine.
const TIMEOUT: Duration = Duration::from_secs(180);

async fn in_browser<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("browser step")
}

/// A raw HTTP/1.1 POST of a command (as another site's script would send it), returning
/// the status line.
fn post_from(addr: SocketAddr, origin: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("the live page listens");
    let request = format!(
        "POST /api/commands HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply.lines().next().unwrap_or_default().to_owned()
}

/// The stored HVAC readings of `sensor` after `ts_ms`.
async fn readings_after(scope: &TestScope, site: &str, sensor: &str, ts_ms: i64) -> Vec<f64> {
    let mut conn = scope.redis_conn().await;
    let key = format!("{}{site}:{sensor}:raw", scope.key_prefix());
    redis_read::range(&mut conn, &key)
        .await
        .into_iter()
        .filter(|(ts, _)| *ts > ts_ms)
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_from_the_live_page_switches_a_device_off_and_is_acknowledged() {
    let mut scope = TestScope::new("device_commands");
    let topics = SystemTopics::create(&mut scope, 1).await;
    let control = CommandTopics {
        commands: scope.create_topic("commands", 1).await,
        acks: scope.create_topic("command-acks", 1).await,
    };
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let site = format!("{}-s1", scope.id);

    // The simulator in real time, obeying commands.
    let stop = Arc::new(AtomicBool::new(false));
    let simulator = tokio::spawn(publish(
        PublishConfig {
            pace: Pace::RealTime {
                steps_per_second: STEPS_PER_SECOND,
            },
            commands: Some(control.clone()),
            ..PublishConfig::fast(
                &bootstrap,
                &topics.readings,
                SimConfig {
                    sites: 1,
                    seed: 9,
                    start_ms: RUN_START_MS,
                    days: None,
                    site_prefix: format!("{}-s", scope.id),
                },
            )
        },
        stop.clone(),
    ));

    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let http = addr.to_string();
    let plugins = plugin_dir();
    let mut host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--http",
            &http,
            "--commands-topic",
            &control.commands,
            "--command-acks-topic",
            &control.acks,
        ],
    );
    host.wait_for_log("live page on", 1, TIMEOUT).await;

    let page = format!("http://{addr}/?site={site}");
    let (browser, ack_text) = in_browser(move || {
        let browser = Browser::launch();
        browser.open(&page);
        browser.wait_for(
            "return document.body.dataset.ready === '1' && document.body.dataset.live === '1' \
             && Number(document.getElementById('panel-raw-HVAC1-table').dataset.points || 0) > 0",
            TIMEOUT,
            "the page to load, connect and show HVAC1 readings",
        );
        // An unknown device: refused by the host, with what is allowed; nothing sent.
        let refused = browser.eval(
            // A returned promise is awaited by WebDriver.
            "return fetch('/api/commands', {method: 'POST', headers: {'Content-Type': 'application/json'}, \
             body: JSON.stringify({id: 'bad-1', site: new URLSearchParams(location.search).get('site'), device: 'HVAC9', action: 'off'})}) \
             .then(r => r.json().then(j => [r.status, j.error]));",
        );
        assert_eq!(refused[0], 400, "{refused}");
        assert!(
            refused[1].as_str().unwrap_or_default().contains("use HVAC1"),
            "{refused}"
        );
        // The page's own form: HVAC1, off.
        browser.eval(
            "document.getElementById('cmd-device').value = 'HVAC1'; \
             document.getElementById('cmd-device').onchange(); \
             document.getElementById('cmd-action').value = 'off'; \
             document.getElementById('cmd-send').click(); return true",
        );
        browser.wait_for(
            "return Number(document.getElementById('panel-commands').dataset.applied || 0) === 1",
            TIMEOUT,
            "the command's acknowledgement on the page",
        );
        let row = browser.eval("return document.querySelector('#panel-commands tbody tr').textContent");
        let row = row.as_str().unwrap_or_default().to_owned();
        browser.screenshot(&repo_root().join("artifacts/live-page-commands.png"));
        (browser, row)
    })
    .await;
    drop(browser);
    assert!(
        ack_text.contains("HVAC1") && ack_text.contains("off") && ack_text.contains("applied at"),
        "the command row shows it applied: {ack_text}"
    );

    // Another origin may not send commands.
    let status = post_from(
        addr,
        "http://evil.example",
        &format!(r#"{{"id":"x1","site":"{site}","device":"HVAC2","action":"off"}}"#),
    );
    assert!(status.contains("403"), "{status}");

    // The acknowledgement's instant, from the topic; then HVAC1 reads 0 after it.
    let acks = read_all(&bootstrap, &control.acks);
    assert_eq!(acks.len(), 1, "one command was applied");
    let ack = acks[0].json();
    assert_eq!(
        (ack["device"].as_str(), ack["action"].as_str()),
        (Some("HVAC1"), Some("off"))
    );
    let ack_ts = ack["ts_ms"].as_i64().expect("the ack's instant");
    let until = Instant::now() + TIMEOUT;
    let after = loop {
        let after = readings_after(&scope, &site, "HVAC1", ack_ts).await;
        if after.len() >= READINGS_AFTER_ACK {
            break after;
        }
        host.assert_running();
        assert!(
            Instant::now() < until,
            "{READINGS_AFTER_ACK} HVAC1 readings after the acknowledgement were not stored within {TIMEOUT:?}; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        after.iter().all(|&v| v == 0.0),
        "HVAC1 is off after the acknowledgement: {after:?}"
    );
    let hvac2 = readings_after(&scope, &site, "HVAC2", ack_ts).await;
    assert!(
        hvac2.iter().any(|&v| v != 0.0),
        "HVAC2 was not switched off: {hvac2:?}"
    );
    let sent = read_all(&bootstrap, &control.commands);
    assert_eq!(
        sent.len(),
        1,
        "only the valid command from the page was sent"
    );

    stop.store(true, Ordering::Relaxed);
    let report = simulator.await.unwrap().expect("the simulator ran");
    assert!(report.failure.is_none(), "{:?}", report.failure);
    host.stop().await;
    let _ = std::fs::remove_file(&log);
}
