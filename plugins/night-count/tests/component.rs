//! `night-count` built as a component and run through the host's harness (`iot-host plugin
//! test`) with its parameters, from its own `cargo test`; the expected counts are computed
//! here in plain Rust.

const DAYS: [&str; 2] = ["2020-01-01", "2020-01-02"];
const FIRST_DAY_START_MS: i64 = 1_577_836_800_000;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Motion events every 7 minutes, some of them "no motion" (0).
const EVENT_EVERY_MS: i64 = 7 * 60_000;

fn events() -> Vec<(i64, f64)> {
    (1..=2 * DAY_MS / EVENT_EVERY_MS)
        .map(|k| {
            (
                FIRST_DAY_START_MS + k * EVENT_EVERY_MS,
                (k % 4 != 0) as u8 as f64,
            )
        })
        .collect()
}

/// Motion events of day `d` (0-based; interval-end convention) with a time of day in
/// [from, to), counted in plain Rust.
fn counted(events: &[(i64, f64)], d: i64, from_ms: i64, to_ms: i64) -> usize {
    let start = FIRST_DAY_START_MS + d * DAY_MS;
    events
        .iter()
        .filter(|(ts, _)| *ts > start && *ts <= start + DAY_MS)
        .filter(|(ts, value)| {
            *value != 0.0 && (from_ms..to_ms).contains(&(ts - start).rem_euclid(DAY_MS))
        })
        .count()
}

#[test]
fn each_day_counts_the_motion_events_between_from_and_to() {
    let events = events();
    let mut test = iot_plugin::component_test!()
        .readings(&events)
        .param("from", "01:30")
        .param("to", "05:00");
    for (d, day) in DAYS.iter().enumerate() {
        let count = counted(&events, d as i64, 90 * 60_000, 5 * HOUR_MS);
        assert!(count > 0, "the events must have some at night");
        test = test.expect(format!("{day}={count}"));
    }
    test.run();
}
