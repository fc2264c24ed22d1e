//! `{{name}}` built as a WebAssembly component and run through the iot-stream host's
//! harness (`iot-host plugin test`): the same loading, sandbox, limits and batching as the
//! host. It needs `iot-host`: on PATH, or `IOT_HOST=<iot-stream>/target/debug/iot-host`.

/// The mean of `day.csv`'s values times `scale`, computed here from the file's own numbers.
fn expected_day_value(scale: f64) -> f64 {
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/day.csv")).unwrap();
    let values: Vec<f64> = csv
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(',').nth(1).unwrap().trim().parse().unwrap())
        .collect();
    values.iter().fold(0.0, |total, v| total + v) / values.len() as f64 * scale
}

#[test]
fn the_component_gives_the_scaled_mean_of_day_csv() {
    iot_plugin::component_test!()
        .samples("day.csv")
        .param("scale", "2")
        .expect(format!("2020-01-01={:?}", expected_day_value(2.0)))
        .run();
}
