//! `sum` built as a component and run through the host's harness (`iot-host plugin test`)
//! from its own `cargo test`; the expected values are added here in plain Rust.

const DAYS: [&str; 2] = ["2020-01-01", "2020-01-02"];
const FIRST_DAY_START_MS: i64 = 1_577_836_800_000;
const STEP_MS: i64 = 900_000;
const STEPS_A_DAY: usize = 96;

/// Two days of 15-minute readings; day D holds D 00:15 … D+1 00:00 (interval-end stamps).
fn readings() -> Vec<(i64, f64)> {
    (1..=2 * STEPS_A_DAY as i64)
        .map(|k| {
            (
                FIRST_DAY_START_MS + k * STEP_MS,
                ((k * 37) % 11) as f64 * 0.75 + 0.1,
            )
        })
        .collect()
}

#[test]
fn each_day_is_the_sum_of_its_readings_in_order() {
    let readings = readings();
    let mut test = iot_plugin::component_test!().readings(&readings);
    for (day, of_day) in DAYS.iter().zip(readings.chunks(STEPS_A_DAY)) {
        let sum = of_day.iter().fold(0.0, |total, (_, value)| total + value);
        test = test.expect(format!("{day}={sum:?}"));
    }
    test.run();
}
