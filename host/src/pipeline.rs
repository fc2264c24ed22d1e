//! The pipeline file: which output series exist, which plugin computes each one, and from
//! which inputs (SPEC §6). The host knows no aggregation by name; it only wires inputs to
//! plugins as this file says.
//!
//! Parsing checks everything that can be checked without the plugins: names, kinds,
//! inputs that exist, no cycles. The result is [`Pipeline`], with the routing tables the
//! engine needs on its hot path precomputed.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use iot_protocol::{Kind, Sensor};
use serde::Deserialize;

/// The reference site's pipeline, compiled in so that the host runs without a file.
pub const REFERENCE_PIPELINE: &str = include_str!("../pipelines/reference.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    #[serde(default)]
    output: Vec<OutputSpec>,
}

/// One `[[output]]` of the pipeline file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub kind: String,
    pub plugin: String,
    pub inputs: Vec<String>,
    #[serde(default)]
    pub params: toml::Table,
    pub unit: Option<String>,
}

/// Where an output's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// Accepted readings of a sensor.
    Sensor(Sensor),
    /// Another output's daily value (index into [`Pipeline::outputs`]).
    Output(usize),
}

/// One output, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub kind: Kind,
    pub plugin: String,
    pub inputs: Vec<InputSource>,
    pub params: Vec<(String, String)>,
    pub unit: String,
}

impl Output {
    /// Derived outputs take other outputs' daily values and are recomputed from scratch
    /// whenever one of them changes.
    pub fn is_derived(&self) -> bool {
        self.inputs
            .iter()
            .any(|i| matches!(i, InputSource::Output(_)))
    }
}

/// A checked pipeline with its routing tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub outputs: Vec<Output>,
    /// For each sensor (by [`Sensor::index`]): the (output, input position) pairs it feeds.
    pub routes_by_sensor: [Vec<(usize, u32)>; Sensor::COUNT],
    /// For each output: the derived outputs that read it.
    pub dependents: Vec<Vec<usize>>,
    /// Derived outputs in an order where every input comes before its readers.
    pub derived_order: Vec<usize>,
}

impl Pipeline {
    pub fn reference() -> Pipeline {
        Pipeline::parse(REFERENCE_PIPELINE).expect("the compiled-in reference pipeline is valid")
    }

    pub fn load(path: &Path) -> anyhow::Result<Pipeline> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the pipeline file {}", path.display()))?;
        Pipeline::parse(&text)
            .with_context(|| format!("pipeline file {} is not valid", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Pipeline> {
        let file: PipelineFile = toml::from_str(text)?;
        resolve(file.output)
    }

    /// Names of the plugins this pipeline uses.
    pub fn plugin_names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.outputs.iter().map(|o| o.plugin.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }
}

fn resolve(specs: Vec<OutputSpec>) -> anyhow::Result<Pipeline> {
    let mut index: HashMap<(String, Kind), usize> = HashMap::new();
    let mut kinds = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let kind = parse_output_kind(&spec.kind)
            .with_context(|| format!("output #{} ({})", i + 1, spec.name))?;
        check_name(&spec.name)?;
        if index.insert((spec.name.clone(), kind), i).is_some() {
            bail!("output {}:{} is declared twice", spec.name, spec.kind);
        }
        kinds.push(kind);
    }
    let mut outputs = Vec::with_capacity(specs.len());
    for (spec, kind) in specs.into_iter().zip(kinds) {
        let inputs = spec
            .inputs
            .iter()
            .map(|input| resolve_input(input, &index))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("output {}:{}", spec.name, spec.kind))?;
        if inputs.is_empty() {
            bail!("output {}:{} has no inputs", spec.name, spec.kind);
        }
        if kind == Kind::Alarm && inputs.iter().any(|i| matches!(i, InputSource::Output(_))) {
            bail!(
                "output {}:{}: an alarm rule takes sensors as inputs, not other outputs",
                spec.name,
                spec.kind
            );
        }
        let unit = match spec.unit {
            Some(unit) => unit,
            None => spec
                .name
                .parse::<Sensor>()
                .map(Sensor::unit)
                .map(str::to_owned)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "output {}:{} is not named after a sensor: give it a `unit`",
                        spec.name,
                        spec.kind
                    )
                })?,
        };
        let params = spec
            .params
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        outputs.push(Output {
            name: spec.name,
            kind,
            plugin: spec.plugin,
            inputs,
            params,
            unit,
        });
    }
    let derived_order = topological_order(&outputs)?;
    let mut routes_by_sensor: [Vec<(usize, u32)>; Sensor::COUNT] = Default::default();
    let mut dependents = vec![Vec::new(); outputs.len()];
    for (o, output) in outputs.iter().enumerate() {
        for (position, input) in output.inputs.iter().enumerate() {
            match *input {
                InputSource::Sensor(sensor) => {
                    routes_by_sensor[sensor.index()].push((o, position as u32))
                }
                InputSource::Output(upstream) => dependents[upstream].push(o),
            }
        }
    }
    for d in &mut dependents {
        d.dedup();
    }
    Ok(Pipeline {
        outputs,
        routes_by_sensor,
        dependents,
        derived_order,
    })
}

fn parse_output_kind(kind: &str) -> anyhow::Result<Kind> {
    match Kind::parse(kind) {
        Some(k @ (Kind::AggDay | Kind::AggDayDiff | Kind::AggDayRest | Kind::Alarm)) => Ok(k),
        Some(_) => bail!("kind {kind:?} is written by the host itself; outputs use AggDay, AggDayDiff, AggDayRest or Alarm"),
        None => bail!("unknown kind {kind:?}: use AggDay, AggDayDiff, AggDayRest or Alarm"),
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !ok {
        bail!("output name {name:?} must be non-empty ASCII letters, digits, '_', '-' or '.' (it is part of a Redis key)");
    }
    Ok(())
}

fn resolve_input(
    input: &str,
    index: &HashMap<(String, Kind), usize>,
) -> anyhow::Result<InputSource> {
    match input.split_once(':') {
        None => input
            .parse::<Sensor>()
            .map(InputSource::Sensor)
            .map_err(|e| anyhow::anyhow!("input {input:?}: {e}")),
        Some((name, kind)) => {
            let kind = Kind::parse(kind)
                .ok_or_else(|| anyhow::anyhow!("input {input:?}: unknown kind {kind:?}"))?;
            if kind == Kind::Alarm {
                bail!("input {input:?}: alarms have no value per day, so no output can take them as an input");
            }
            index
                .get(&(name.to_owned(), kind))
                .map(|&o| InputSource::Output(o))
                .ok_or_else(|| anyhow::anyhow!("input {input:?} names no output of this pipeline"))
        }
    }
}

/// Kahn's algorithm over the derived outputs; a cycle is an error naming its members.
fn topological_order(outputs: &[Output]) -> anyhow::Result<Vec<usize>> {
    let mut remaining: Vec<usize> = (0..outputs.len())
        .filter(|&o| outputs[o].is_derived())
        .collect();
    let mut done = vec![false; outputs.len()];
    for (o, output) in outputs.iter().enumerate() {
        done[o] = !output.is_derived();
    }
    let mut order = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|&o| {
            let ready = outputs[o].inputs.iter().all(|i| match i {
                InputSource::Output(u) => done[*u],
                InputSource::Sensor(_) => true,
            });
            if ready {
                order.push(o);
            }
            !ready
        });
        for &o in &order {
            done[o] = true;
        }
        if remaining.len() == before {
            let names: Vec<String> = remaining
                .iter()
                .map(|&o| format!("{}:{}", outputs[o].name, outputs[o].kind))
                .collect();
            bail!("outputs read each other in a cycle: {}", names.join(", "));
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_pipeline_declares_every_daily_output_of_the_spec() {
        let p = Pipeline::reference();
        let mut names: Vec<String> = p
            .outputs
            .iter()
            .map(|o| format!("{}:{}", o.name, o.kind))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "Etot:AggDayDiff",
                "Etot:AggDayRest",
                "HVAC1:AggDay",
                "HVAC2:AggDay",
                "MiAC1:AggDay",
                "MiAC2:AggDay",
                "Mov1:AggDay",
                "TH1:AggDay",
                "TH2:AggDay",
                "W1:AggDay",
                "Wtot:AggDayDiff",
                "Wtot:AggDayRest"
            ]
        );
    }

    #[test]
    fn derived_outputs_come_after_their_inputs() {
        let p = Pipeline::reference();
        assert_eq!(p.derived_order.len(), 2);
        let etot_diff = p
            .outputs
            .iter()
            .position(|o| o.name == "Etot" && o.kind == Kind::AggDayDiff)
            .unwrap();
        let etot_rest = p
            .outputs
            .iter()
            .position(|o| o.name == "Etot" && o.kind == Kind::AggDayRest)
            .unwrap();
        assert!(p.dependents[etot_diff].contains(&etot_rest));
        assert_eq!(
            p.routes_by_sensor[Sensor::Etot.index()],
            vec![(etot_diff, 0)]
        );
    }

    #[test]
    fn a_cycle_between_outputs_is_refused() {
        let text = r#"
            [[output]]
            name = "a"
            kind = "AggDayRest"
            plugin = "rest"
            unit = "Wh"
            inputs = ["b:AggDayRest", "HVAC1"]
            [[output]]
            name = "b"
            kind = "AggDayRest"
            plugin = "rest"
            unit = "Wh"
            inputs = ["a:AggDayRest", "HVAC1"]
        "#;
        let err = Pipeline::parse(text).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn an_unknown_input_sensor_is_refused_with_its_name() {
        let text =
            "[[output]]\nname = \"TH1\"\nkind = \"AggDay\"\nplugin = \"sum\"\ninputs = [\"TH9\"]\n";
        let err = format!("{:#}", Pipeline::parse(text).unwrap_err());
        assert!(err.contains("TH9"), "{err}");
    }
}
