//! `iot-host plugin test`: runs a plugin over readings from a CSV file exactly as the host
//! does (the same loading, sandbox, limits and lowering), one day window at a time, and
//! prints or checks each window's value. It also checks the WIT rule that folding a
//! window's samples in one batch or in several gives the same accumulator bytes.
//!
//! The samples file has one reading a line, `timestamp,value[,input]`: the timestamp in
//! RFC 3339 (`2020-01-01T00:15:00Z`), `YYYY-MM-DD HH:MM:SS` (UTC) or UTC milliseconds; the
//! input is the position of the reading's series among the output's inputs (default 0).
//! Blank lines, lines starting with `#` and a header line are skipped. Windows are days
//! under the interval-end convention (SPEC §2): day D holds the readings stamped after D
//! 00:00 up to D+1 00:00 inclusive; a plugin that asks for the window's start also gets the
//! reading stamped exactly at D 00:00.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use iot_protocol::record::parse_timestamp;
use iot_protocol::time::{format_ts, interval_end_window_end, DAY_MS};

use crate::config::PluginTestArgs;
use crate::plugin::{Alarm, LoadedPlugin, PluginHost, PluginInstance, PluginKind, Sample, Window};

/// What a window's value is expected to be: `--expect VALUE` (every window) or
/// `--expect YYYY-MM-DD=VALUE` (the window of that day, named by its start).
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub day: Option<i64>,
    /// `None`: the plugin must give no value (`--expect none`).
    pub value: Option<f64>,
}

/// How far a value may be from the expected one: relative, for sums in another order.
const TOLERANCE: f64 = 1e-9;

/// One day window of [`fold_days`]: its value, or why the plugin could not give one.
#[derive(Debug)]
pub struct DayOutcome {
    pub window: Window,
    /// How many samples the window received.
    pub samples: usize,
    /// The window's value (for an alarm rule, `None`), or why the plugin gave none.
    pub value: anyhow::Result<Option<f64>>,
    /// The alarms an alarm rule raised in the window, in order (none for an aggregation).
    pub alarms: Vec<Alarm>,
}

/// The harness: runs `samples` through `plugin` one day window at a time, exactly as the
/// host does (same loading, sandbox, limits and lowering), and checks in each window the
/// WIT rule that folding in one batch, one sample at a time or in two batches gives the
/// same accumulator bytes. Used by `iot-host plugin test` and by plugin tests
/// (`host/tests/plugins.rs`).
pub fn fold_days(
    plugin: &LoadedPlugin,
    params: &[(String, String)],
    inputs: u32,
    samples: &[Sample],
) -> anyhow::Result<Vec<DayOutcome>> {
    let info = plugin.info();
    if !(info.min_inputs..=info.max_inputs).contains(&inputs) {
        anyhow::bail!(
            "plugin {} takes {}..={} inputs, not {inputs}",
            info.name,
            info.min_inputs,
            info.max_inputs
        );
    }
    let mut instance = plugin.instantiate()?;
    let windows = into_windows(samples, info.includes_window_start);
    Ok(windows
        .iter()
        .map(|(&end_ms, samples)| {
            let window = Window {
                start_ms: end_ms - DAY_MS,
                end_ms,
            };
            let outcome = run_window(&mut instance, params, inputs, window, samples);
            let (value, alarms) = match outcome {
                Ok((value, alarms)) => (Ok(value), alarms),
                Err(e) => (Err(e), Vec::new()),
            };
            DayOutcome {
                window,
                samples: samples.len(),
                value,
                alarms,
            }
        })
        .collect())
}

/// Runs the test; prints one line per window and returns whether every check passed.
pub fn run(args: &PluginTestArgs) -> anyhow::Result<bool> {
    let plugin = PluginHost::new(args.limits.limits())?.load_file(&args.file)?;
    let samples = read_samples(&args.samples)?;
    if samples.is_empty() {
        anyhow::bail!("{} holds no readings", args.samples.display());
    }
    let info = plugin.info();
    let inputs = args.inputs.unwrap_or(info.min_inputs);
    if !(info.min_inputs..=info.max_inputs).contains(&inputs) {
        anyhow::bail!(
            "plugin {} takes {}..={} inputs, not {inputs}: pass --inputs",
            info.name,
            info.min_inputs,
            info.max_inputs
        );
    }
    let days = fold_days(&plugin, &args.params, inputs, &samples)?;
    let rule = plugin.kind() == PluginKind::AlarmRule;
    let mut all_ok = true;
    for day in days {
        let date = &format_ts(day.window.start_ms)[..10];
        match day.value {
            Ok(_) if rule => {
                // A rule's value to check is its number of alarms.
                let count = day.alarms.len();
                let verdict = check(&args.expect, day.window.start_ms, Some(count as f64));
                all_ok &= verdict.is_ok();
                match verdict {
                    Ok(()) => println!("ok   {date}  {count} alarms  ({} samples)", day.samples),
                    Err(why) => {
                        println!(
                            "FAIL {date}  {count} alarms  ({} samples): {why}",
                            day.samples
                        )
                    }
                }
                for alarm in &day.alarms {
                    println!(
                        "     alarm {}  {}  {}",
                        format_ts(alarm.ts_ms),
                        alarm.value,
                        alarm.evidence
                    );
                }
            }
            Ok(value) => {
                let verdict = check(&args.expect, day.window.start_ms, value);
                all_ok &= verdict.is_ok();
                let shown = value.map_or("no value".to_owned(), |v| v.to_string());
                match verdict {
                    Ok(()) => println!("ok   {date}  {shown}  ({} samples)", day.samples),
                    Err(why) => println!("FAIL {date}  {shown}  ({} samples): {why}", day.samples),
                }
            }
            Err(e) => {
                all_ok = false;
                println!("FAIL {date}  {e:#}");
            }
        }
    }
    Ok(all_ok)
}

/// One window through the plugin: init, fold in one batch, finish; then the same samples
/// folded one at a time and in two halves must give the same accumulator bytes (and, for
/// an alarm rule, the same alarms in the same order).
fn run_window(
    instance: &mut PluginInstance,
    params: &[(String, String)],
    inputs: u32,
    window: Window,
    samples: &[Sample],
) -> anyhow::Result<(Option<f64>, Vec<Alarm>)> {
    let fresh = |instance: &mut PluginInstance| instance.init(params, inputs, window);
    instance.take_alarms().for_each(drop);
    let mut whole = fresh(instance)?;
    instance.fold(&mut whole, window, samples)?;
    let value = instance.finish(&whole, window)?;
    let alarms: Vec<Alarm> = instance.take_alarms().collect();

    let mut one_by_one = fresh(instance)?;
    for sample in samples {
        instance.fold(&mut one_by_one, window, std::slice::from_ref(sample))?;
    }
    let alarms_one_by_one: Vec<Alarm> = instance.take_alarms().collect();
    let (first, second) = samples.split_at(samples.len() / 2);
    let mut halves = fresh(instance)?;
    instance.fold(&mut halves, window, first)?;
    instance.fold(&mut halves, window, second)?;
    let alarms_halves: Vec<Alarm> = instance.take_alarms().collect();
    for (how, state, raised) in [
        ("one at a time", &one_by_one, &alarms_one_by_one),
        ("in two batches", &halves, &alarms_halves),
    ] {
        if *state != whole {
            anyhow::bail!(
                "folding the samples {how} gives other accumulator bytes than one batch \
                 ({} vs {} bytes): the WIT requires the same bytes however the samples are \
                 batched (wit/README.md)",
                state.len(),
                whole.len()
            );
        }
        if *raised != alarms {
            anyhow::bail!(
                "folding the samples {how} raises other alarms than one batch ({} vs {}): \
                 the WIT requires the same alarms in the same order however the samples are \
                 batched (wit/README.md)",
                raised.len(),
                alarms.len()
            );
        }
    }
    Ok((value, alarms))
}

fn check(expect: &[Expectation], window_start: i64, value: Option<f64>) -> Result<(), String> {
    let wanted = expect
        .iter()
        .find(|e| e.day == Some(window_start))
        .or_else(|| expect.iter().find(|e| e.day.is_none()));
    let Some(wanted) = wanted else {
        return Ok(()); // nothing expected: print only
    };
    match (wanted.value, value) {
        (None, None) => Ok(()),
        (Some(w), Some(v)) if (w - v).abs() <= TOLERANCE * w.abs().max(1.0) => Ok(()),
        (w, v) => Err(format!(
            "expected {}, got {}",
            w.map_or("no value".to_owned(), |w| w.to_string()),
            v.map_or("no value".to_owned(), |v| v.to_string())
        )),
    }
}

/// The readings of each window, by window end, in file order.
fn into_windows(samples: &[Sample], includes_window_start: bool) -> BTreeMap<i64, Vec<Sample>> {
    let mut windows: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
    for &sample in samples {
        let end = interval_end_window_end(sample.ts_ms);
        windows.entry(end).or_default().push(sample);
        if includes_window_start && sample.ts_ms.rem_euclid(DAY_MS) == 0 {
            windows.entry(end + DAY_MS).or_default().push(sample);
        }
    }
    windows
}

/// Reads `timestamp,value[,input]` lines (see the module's documentation).
pub fn read_samples(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the samples file {}", path.display()))?;
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Ok(sample) => samples.push(sample),
            Err(_) if samples.is_empty() && n == 0 => continue, // a header
            Err(e) => anyhow::bail!("{}:{}: {e}", path.display(), n + 1),
        }
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let mut fields = line.split(',').map(str::trim);
    let ts = fields.next().unwrap_or_default();
    let ts_ms = match ts.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => parse_timestamp(ts).map_err(|e| anyhow::anyhow!("timestamp {ts:?}: {e}"))?,
    };
    let value: f64 = fields
        .next()
        .context("no value: lines are timestamp,value[,input]")?
        .parse()
        .context("the value is not a number")?;
    if !value.is_finite() {
        anyhow::bail!("the value is not finite");
    }
    let input: u32 = match fields.next() {
        Some(input) => input.parse().context("the input is not a whole number")?,
        None => 0,
    };
    Ok(Sample::new(input, ts_ms, value))
}

/// Parses `--expect`: `VALUE`, `none`, `YYYY-MM-DD=VALUE` or `YYYY-MM-DD=none`.
pub fn parse_expectation(text: &str) -> Result<Expectation, String> {
    let (day, value) = match text.split_once('=') {
        Some((day, value)) => {
            let start = parse_timestamp(&format!("{day}T00:00:00Z"))
                .map_err(|e| format!("the day {day:?} is not YYYY-MM-DD: {e}"))?;
            (Some(start), value)
        }
        None => (None, text),
    };
    let value = match value {
        "none" => None,
        v => Some(
            v.parse::<f64>()
                .map_err(|_| format!("{v:?} is not a number or `none`"))?,
        ),
    };
    Ok(Expectation { day, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1: i64 = 1_577_836_800_000;

    #[test]
    fn a_reading_at_midnight_closes_the_day_before_and_opens_the_next_for_start_plugins() {
        let midnight = Sample::new(0, JAN_1 + DAY_MS, 5.0);
        let plain = into_windows(&[midnight], false);
        assert_eq!(
            plain.keys().copied().collect::<Vec<_>>(),
            vec![JAN_1 + DAY_MS]
        );
        let both = into_windows(&[midnight], true);
        assert_eq!(
            both.keys().copied().collect::<Vec<_>>(),
            vec![JAN_1 + DAY_MS, JAN_1 + 2 * DAY_MS]
        );
    }

    #[test]
    fn expectations_name_a_day_or_every_window() {
        assert_eq!(
            parse_expectation("2020-01-01=12.5").unwrap(),
            Expectation {
                day: Some(JAN_1),
                value: Some(12.5)
            }
        );
        assert_eq!(
            parse_expectation("none").unwrap(),
            Expectation {
                day: None,
                value: None
            }
        );
        assert!(parse_expectation("2020-13-01=1").is_err());
        assert!(check(&[parse_expectation("3").unwrap()], JAN_1, Some(3.0)).is_ok());
        assert!(check(&[parse_expectation("3").unwrap()], JAN_1, Some(3.5)).is_err());
    }

    #[test]
    fn sample_lines_take_three_timestamp_forms_and_an_optional_input() {
        let ms = parse_sample("1577837700000, 1.5").unwrap();
        let rfc = parse_sample("2020-01-01T00:15:00Z,1.5").unwrap();
        let plain = parse_sample("2020-01-01 00:15:00,1.5,2").unwrap();
        assert_eq!(ms, rfc);
        assert_eq!(plain, Sample::new(2, JAN_1 + 900_000, 1.5));
        assert!(parse_sample("2020-01-01T00:15:00Z").is_err());
        assert!(parse_sample("2020-01-01T00:15:00Z,NaN").is_err());
    }
}
