//! `count` built as a component and run through the host's harness (`iot-host plugin test`)
//! from its own `cargo test`.

const FIRST_DAY_START_MS: i64 = 1_577_836_800_000;
const STEP_MS: i64 = 900_000;

#[test]
fn a_day_counts_its_readings_whatever_their_values() {
    // 40 readings on the first day only, zeros among them.
    let readings: Vec<(i64, f64)> = (1..=40)
        .map(|k| (FIRST_DAY_START_MS + k * STEP_MS, (k % 3) as f64))
        .collect();
    iot_plugin::component_test!()
        .readings(&readings)
        .expect(format!("2020-01-01={}", readings.len()))
        .run();
}
