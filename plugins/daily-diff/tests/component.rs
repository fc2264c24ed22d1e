//! `daily-diff` built as a component and run through the host's harness (`iot-host plugin
//! test`) from its own `cargo test`: a meter's readings, including the one at the window's
//! start; the expected differences are computed here in plain Rust.

const DAYS: [&str; 2] = ["2020-01-01", "2020-01-02"];
const FIRST_DAY_START_MS: i64 = 1_577_836_800_000;
const STEP_MS: i64 = 900_000;
const STEPS_A_DAY: usize = 96;
const METER_AT_START: f64 = 1_000_123.5;

/// A cumulative meter every 15 minutes from the first day's 00:00 to the third's 00:00.
fn meter() -> Vec<(i64, f64)> {
    let mut value = METER_AT_START;
    (0..=2 * STEPS_A_DAY as i64)
        .map(|k| {
            value += ((k * 13) % 17) as f64 * 1.25;
            (FIRST_DAY_START_MS + k * STEP_MS, value)
        })
        .collect()
}

#[test]
fn each_day_is_the_meter_at_its_end_minus_the_meter_at_its_start() {
    let meter = meter();
    let mut test = iot_plugin::component_test!().readings(&meter);
    for (d, day) in DAYS.iter().enumerate() {
        let (start, end) = (meter[d * STEPS_A_DAY].1, meter[(d + 1) * STEPS_A_DAY].1);
        test = test.expect(format!("{day}={:?}", end - start));
    }
    test.run();
}
