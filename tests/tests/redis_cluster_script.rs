//! `scripts/redis-cluster`, as the README tells users to run it: it forms a 3-master Redis
//! Cluster with TimeSeries on every shard, finds it running when asked again, reports it,
//! and stops it leaving nothing behind. (The host on the cluster: the `on_a_redis_cluster_…`
//! tests, which use the default ports through `fixture::redis_cluster_url`.)

use std::process::{Command, Output};

use system_tests::fixture::repo_root;

/// Ports of its own, so the test never meets a cluster a user started on the defaults.
const PORTS: &str = "17101 17102 17103";

fn cluster(command: &str) -> Output {
    Command::new(repo_root().join("scripts/redis-cluster"))
        .arg(command)
        .env("REDIS_CLUSTER_PORTS", PORTS)
        .env(
            "IOT_STACK_DIR",
            repo_root().join(".stack/test-redis-cluster"),
        )
        .output()
        .expect("scripts/redis-cluster runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_cluster_script_forms_a_timeseries_cluster_finds_it_again_and_stops_it() {
    let up = cluster("up");
    assert!(up.status.success(), "up failed:\n{}", text(&up));
    assert!(
        text(&up).contains("RedisTimeSeries works on every shard"),
        "{}",
        text(&up)
    );

    let again = cluster("up");
    assert!(
        again.status.success(),
        "a second up failed:\n{}",
        text(&again)
    );
    assert!(
        text(&again).contains("already form a cluster"),
        "{}",
        text(&again)
    );

    let status = cluster("status");
    assert!(status.status.success(), "status:\n{}", text(&status));
    assert_eq!(
        text(&status).matches("cluster_state:ok").count(),
        3,
        "{}",
        text(&status)
    );

    let reset = cluster("reset");
    assert!(reset.status.success(), "reset failed:\n{}", text(&reset));
    let after = cluster("status");
    assert!(
        !after.status.success(),
        "status after reset:\n{}",
        text(&after)
    );
    assert_eq!(
        text(&after).matches(": down").count(),
        3,
        "{}",
        text(&after)
    );
}
