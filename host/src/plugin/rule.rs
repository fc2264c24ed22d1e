//! Alarm rules (`iot:aggregation/alarm-rule@1.0.0`): what differs from an aggregation's
//! calls. A rule has `info`, `init` and a `fold` that also returns the alarms it raised; no
//! `finish`. The calls go through typed functions of hand-written types (there is one
//! world per generated binding, and a rule's `sample` and `window` are the same records as
//! the aggregation's, so the aggregation's lowering serves both).

use wasmtime::component::{ComponentExportIndex, ComponentType, Func, Instance, Lift, TypedFunc};
use wasmtime::Store;

use super::bindings::{PluginInfo, Window};
use super::lowering::SampleBatch;

/// The rule's interface, as components export it.
pub(super) const INTERFACE: &str = "iot:aggregation/alarm-rule@1.0.0";

/// Bytes of an alarm's evidence the host keeps (a longer one is cut at a character
/// boundary); evidence is for people and travels in every alarm record.
pub const MAX_EVIDENCE_BYTES: usize = 256;

/// One alarm a rule raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// The instant the condition held (a reading's time), UTC ms, inside the window.
    pub ts_ms: i64,
    /// What the output's `Alarm` series stores at `ts_ms`.
    pub value: f64,
    /// Why, for people (at most [`MAX_EVIDENCE_BYTES`]).
    pub evidence: String,
}

/// `alarm-rule.alarm` as the component returns it.
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
pub(super) struct RaisedAlarm {
    #[component(name = "ts-ms")]
    ts_ms: i64,
    value: f64,
    evidence: String,
}

impl RaisedAlarm {
    pub(super) fn into_alarm(mut self) -> Alarm {
        if self.evidence.len() > MAX_EVIDENCE_BYTES {
            let mut cut = MAX_EVIDENCE_BYTES;
            while !self.evidence.is_char_boundary(cut) {
                cut -= 1;
            }
            self.evidence.truncate(cut);
        }
        Alarm {
            ts_ms: self.ts_ms,
            value: self.value,
            evidence: self.evidence,
        }
    }
}

/// `alarm-rule.rule-info`.
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
struct RuleInfo {
    name: String,
    #[component(name = "state-version")]
    state_version: u32,
    #[component(name = "min-inputs")]
    min_inputs: u32,
    #[component(name = "max-inputs")]
    max_inputs: u32,
}

type InitParams<'a> = (&'a [(String, String)], u32, Window);
type StateResult = (Result<Vec<u8>, String>,);
pub(super) type RuleFoldParams<'a> = (&'a [u8], Window, SampleBatch<'a>);
pub(super) type RuleFoldResults = (Result<(Vec<u8>, Vec<RaisedAlarm>), String>,);

/// Where a rule's functions are in its component.
#[derive(Clone, Copy)]
pub(super) struct RuleExports {
    info: ComponentExportIndex,
    init: ComponentExportIndex,
    fold: ComponentExportIndex,
}

impl RuleExports {
    /// The rule interface's functions, if the component exports it.
    pub(super) fn find(component: &wasmtime::component::Component) -> Option<RuleExports> {
        let interface = component.get_export_index(None, INTERFACE)?;
        let func = |name| component.get_export_index(Some(&interface), name);
        Some(RuleExports {
            info: func("info")?,
            init: func("init")?,
            fold: func("fold")?,
        })
    }
}

/// A live rule instance's functions, type-checked once when instantiated.
pub(super) struct RuleCalls {
    info: Func,
    init: Func,
    pub(super) fold: Func,
}

impl RuleCalls {
    pub(super) fn load<T>(
        store: &mut Store<T>,
        instance: &Instance,
        exports: &RuleExports,
    ) -> wasmtime::Result<RuleCalls> {
        let get = |store: &mut Store<T>, index, name| {
            instance
                .get_func(&mut *store, index)
                .ok_or_else(|| wasmtime::format_err!("no export {INTERFACE}#{name}"))
        };
        let calls = RuleCalls {
            info: get(store, exports.info, "info")?,
            init: get(store, exports.init, "init")?,
            fold: get(store, exports.fold, "fold")?,
        };
        calls.info.typed::<(), (RuleInfo,)>(&*store)?;
        calls.init.typed::<InitParams<'_>, StateResult>(&*store)?;
        calls
            .fold
            .typed::<RuleFoldParams<'_>, RuleFoldResults>(&*store)?;
        Ok(calls)
    }

    pub(super) fn info<T>(&self, store: &mut Store<T>) -> wasmtime::Result<PluginInfo> {
        // SAFETY: type-checked in `load`.
        let info = unsafe { TypedFunc::<(), (RuleInfo,)>::new_unchecked(self.info) };
        let (info,) = info.call(store, ())?;
        Ok(PluginInfo {
            name: info.name,
            state_version: info.state_version,
            includes_window_start: false,
            min_inputs: info.min_inputs,
            max_inputs: info.max_inputs,
        })
    }

    pub(super) fn init<T>(
        &self,
        store: &mut Store<T>,
        params: &[(String, String)],
        inputs: u32,
        window: Window,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        // SAFETY: type-checked in `load`.
        let init = unsafe { TypedFunc::<InitParams<'_>, StateResult>::new_unchecked(self.init) };
        let (state,) = init.call(store, (params, inputs, window))?;
        Ok(state)
    }
}
