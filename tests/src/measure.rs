//! What benchmarks read about the processes they run: CPU time of a process, and Redis's.

/// CPU seconds (user + system) of a process, from /proc (clock ticks of 1/100 s).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Redis's own CPU seconds (`INFO cpu`: used_cpu_user + used_cpu_sys), summed over the
/// shards of a cluster.
pub async fn redis_cpu_seconds(conn: &mut iot_host::store::RedisReader) -> f64 {
    let infos = conn.info_every_shard("cpu").await.expect("INFO cpu");
    infos
        .iter()
        .flat_map(|info| info.lines())
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}
