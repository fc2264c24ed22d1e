//! `iot-host validate`, the check a plugin author runs before deploying: it passes the
//! shipped plugins, and refuses each hostile fixture with the reason and a non-zero exit.

use std::process::{Command, Output};

use system_tests::fixture::{fixture_plugin, host_binary, plugin_dir};

fn validate(args: &[&str], files: &[std::path::PathBuf]) -> Output {
    Command::new(host_binary())
        .arg("validate")
        .args(args)
        .args(files)
        .output()
        .expect("the host binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn validate_passes_every_shipped_plugin_and_prints_its_info() {
    let names = [
        "sum",
        "mean",
        "count",
        "daily-diff",
        "rest",
        "max",
        "night-count",
    ];
    let files: Vec<_> = names
        .iter()
        .map(|n| plugin_dir().join(format!("{n}.wasm")))
        .collect();
    let output = validate(&[], &files);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for name in names {
        assert!(
            text.contains(&format!("name {name:?}")),
            "{name} is reported: {text}"
        );
    }
    assert_eq!(text.matches("ok   ").count(), names.len(), "{text}");
    let sum_report = || {
        text.lines()
            .skip_while(|l| !l.ends_with("sum.wasm"))
            .skip(1)
    };
    // The probe window folds 1, 2, …, 96: sum reports their total.
    let probe = sum_report()
        .find(|l| l.contains("probe window"))
        .unwrap_or_default();
    assert!(probe.contains(&format!(": {} in", 96 * 97 / 2)), "{probe}");
    // A std plugin's stdio imports, each with what the sandbox gives it.
    let imports = sum_report()
        .find(|l| l.contains("imports:"))
        .unwrap_or_default();
    assert!(
        imports.contains("wasi:cli/stderr@0.2.")
            && imports.contains("(captured into the errors of calls that trap)"),
        "{imports}"
    );
    assert!(imports.contains("wasi:cli/environment@0.2."), "{imports}");
    assert!(!imports.contains("wasi:clocks"), "{imports}");
}

#[test]
fn validate_refuses_a_plugin_built_against_another_wit_version_naming_both_versions() {
    let output = validate(&[], &[fixture_plugin("wrong-wit-version")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("iot:aggregation/fold@1.0.0"), "{text}");
    assert!(
        text.contains("it exports: iot:aggregation/fold@2.0.0"),
        "{text}"
    );
}

#[test]
fn validate_refuses_a_capability_import_by_name() {
    let output = validate(&[], &[fixture_plugin("clock-reader")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("wasi:clocks"), "{text}");
}

#[test]
fn validate_runs_the_probe_under_the_limits_given() {
    let looping = validate(
        &["--fuel-per-call", "100000", "--param", "mode=loop"],
        &[fixture_plugin("misbehaving")],
    );
    assert_eq!(looping.status.code(), Some(1));
    assert!(
        stdout(&looping).contains("ran out of fuel (100000 per call)"),
        "{}",
        stdout(&looping)
    );

    let growing = validate(
        &["--max-memory-mib", "4", "--param", "mode=grow"],
        &[fixture_plugin("misbehaving")],
    );
    assert_eq!(growing.status.code(), Some(1));
    assert!(
        stdout(&growing).contains("ran out of memory"),
        "{}",
        stdout(&growing)
    );

    let nan = validate(&["--param", "mode=nan"], &[fixture_plugin("misbehaving")]);
    assert_eq!(nan.status.code(), Some(1));
    assert!(stdout(&nan).contains("non-finite"), "{}", stdout(&nan));
}

#[test]
fn validate_checks_the_accumulator_against_the_bound_and_says_so() {
    let huge = validate(
        &["--param", "mode=huge-init"],
        &[fixture_plugin("misbehaving")],
    );
    assert_eq!(huge.status.code(), Some(1), "{}", stdout(&huge));
    assert!(
        stdout(&huge).contains(
            "accumulator of 16777216 bytes from init, over the bound of 65536 bytes per window"
        ),
        "{}",
        stdout(&huge)
    );

    // One fold of the probe grows it by 16 KiB: under the default bound, over a 4 KiB one.
    let growing = [fixture_plugin("misbehaving")];
    let fits = validate(&["--param", "mode=grow-state"], &growing);
    assert!(fits.status.success(), "{}", stdout(&fits));
    assert!(
        stdout(&fits).contains("(accumulator 16401 bytes, bound 65536 bytes per window)"),
        "{}",
        stdout(&fits)
    );
    let too_big = validate(
        &["--max-state-bytes", "4096", "--param", "mode=grow-state"],
        &growing,
    );
    assert_eq!(too_big.status.code(), Some(1), "{}", stdout(&too_big));
    assert!(
        stdout(&too_big).contains("from fold, over the bound of 4096 bytes per window"),
        "{}",
        stdout(&too_big)
    );
}

/// The numbers on the `fuel:` line of a report: init, fold, finish.
fn reported_fuel(report: &str) -> [u64; 3] {
    let line = report
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("fuel: "))
        .unwrap_or_else(|| panic!("no fuel line in the report:\n{report}"));
    let after = |word: &str| -> u64 {
        let rest = &line[line
            .find(word)
            .unwrap_or_else(|| panic!("{word} in {line}"))
            + word.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("a number after {word:?} in {line}"))
    };
    [after("init "), after("fold "), after("finish ")]
}

/// What the report says a plugin burned is what it needs: a tenant whose fuel bound is the
/// largest of the three calls runs the probe, one with a tenth less does not.
#[test]
fn validate_reports_the_fuel_a_plugin_needs_and_that_much_is_enough() {
    let sum = plugin_dir().join("sum.wasm");
    let report = stdout(&validate(&[], std::slice::from_ref(&sum)));
    let [init, fold, finish] = reported_fuel(&report);
    let larger = stdout(&validate(&["--samples", "960"], std::slice::from_ref(&sum)));
    assert!(
        reported_fuel(&larger)[1] > fold,
        "folding ten times the samples burns more fuel:\n{report}\n{larger}"
    );
    assert!(
        report.contains("linear memory ") && !report.contains("linear memory 0.0 MiB"),
        "{report}"
    );

    let needed = init.max(fold).max(finish);
    let enough = validate(
        &["--fuel-per-call", &needed.to_string()],
        std::slice::from_ref(&sum),
    );
    assert!(enough.status.success(), "{}", stdout(&enough));
    let less = (needed - needed / 10).to_string();
    let short = validate(&["--fuel-per-call", &less], std::slice::from_ref(&sum));
    assert!(
        stdout(&short).contains(&format!("ran out of fuel ({less} per call)")),
        "{}",
        stdout(&short)
    );
}
