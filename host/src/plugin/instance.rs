//! One instantiated plugin and its calls, each under the fuel bound and memory cap.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Func, TypedFunc};
use wasmtime::{Store, Trap};

use super::bindings::{Aggregation, PluginInfo, Window};
use super::deterministic::CallDeterminism;
use super::error::PluginError;
use super::limits::{MemoryCapExceeded, SandboxLimiter};
use super::loader::{Exports, Inner};
use super::lowering::SampleBatch;
use super::rule::{Alarm, RuleCalls, RuleFoldParams, RuleFoldResults};
use super::sample::Sample;
use super::sandbox;
use super::stdio::CapturedOutput;
use crate::metrics::PluginMeter;

/// `fold`'s signature, with the samples lowered by [`SampleBatch`].
type FoldParams<'a> = (&'a [u8], Window, SampleBatch<'a>);
type FoldResults = (Result<Vec<u8>, String>,);

/// What a plugin's store holds: its limiter and what it printed (no WASI context: no
/// capability).
pub(crate) struct Sandbox {
    limiter: SandboxLimiter,
    pub(super) output: CapturedOutput,
    /// The deterministic clocks and randomness, for a tenant that opted into them.
    pub(super) determinism: CallDeterminism,
}

/// A live plugin instance: its own store, memory and limits. `Send`, not shared: each user
/// (e.g. each engine) has its own.
///
/// Every call runs with a fresh fuel budget and under the memory cap; every failure comes
/// back as a [`PluginError`]. A call that traps (including running out of fuel or memory)
/// leaves the WebAssembly instance unusable: it is dropped, and the next call runs in a
/// fresh instance, transparently. Accumulators live with the caller, so nothing is lost
/// but the failed call's work; an error the plugin *returns* keeps the instance.
pub struct PluginInstance {
    plugin: Arc<Inner>,
    /// `None` after a trap, until the next call re-creates it.
    live: Option<Live>,
    /// Where its calls, fuel and memory are counted (the engine's instances have one).
    meter: Option<PluginMeter>,
    /// Calls made, for timing one in [`PluginMeter::TIME_ONE_CALL_IN`].
    calls: u32,
    /// Fuel the last call burned (`None` when calls have no fuel bound).
    last_call_fuel: Option<u64>,
    /// Alarms a rule's `fold` raised and the caller has not taken yet
    /// ([`PluginInstance::take_alarms`]); always empty for an aggregation.
    raised: Vec<Alarm>,
}

struct Live {
    store: Store<Sandbox>,
    calls: Calls,
}

/// A live instance's functions, by the kind of plugin.
enum Calls {
    Aggregation {
        bindings: Aggregation,
        /// The `fold` export, type-checked against [`FoldParams`] and [`FoldResults`].
        fold: Func,
    },
    AlarmRule(RuleCalls),
}

impl PluginInstance {
    pub(super) fn new(plugin: Arc<Inner>) -> Result<PluginInstance, PluginError> {
        let live = Some(instantiate(&plugin, None)?);
        Ok(PluginInstance {
            plugin,
            live,
            meter: None,
            calls: 0,
            last_call_fuel: None,
            raised: Vec::new(),
        })
    }

    /// Counts this instance's calls, fuel and memory in `meter` from now on.
    pub fn set_meter(&mut self, meter: PluginMeter) {
        if let Some(live) = &mut self.live {
            live.store
                .data_mut()
                .limiter
                .report_memory_to(meter.memory.clone());
        }
        self.meter = Some(meter);
    }

    /// Fuel the last call burned, `None` when calls have no fuel bound: what
    /// `--fuel-per-call` must at least allow for a call of that size.
    pub fn last_call_fuel(&self) -> Option<u64> {
        self.last_call_fuel
    }

    /// Linear memory the instance has now (what `--max-memory-mib` caps), 0 after a trap
    /// until the next call.
    pub fn memory_bytes(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |live| live.store.data().limiter.memory_bytes())
    }

    /// The file stem of the plugin this is an instance of.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }

    /// The plugin's `info()` as loading read it.
    pub fn plugin_info(&self) -> &PluginInfo {
        &self.plugin.info
    }

    pub(super) fn info(&mut self) -> Result<PluginInfo, PluginError> {
        self.call("info", |live| match &live.calls {
            Calls::Aggregation { bindings, .. } => bindings
                .iot_aggregation_fold()
                .call_info(&mut live.store)
                .map(Ok),
            Calls::AlarmRule(rule) => rule.info(&mut live.store).map(Ok),
        })
    }

    /// A new accumulator for `window`, given the output's parameters and its number of
    /// inputs.
    pub fn init(
        &mut self,
        params: &[(String, String)],
        inputs: u32,
        window: Window,
    ) -> Result<Vec<u8>, PluginError> {
        let state = self.call("init", |live| match &live.calls {
            Calls::Aggregation { bindings, .. } => {
                bindings
                    .iot_aggregation_fold()
                    .call_init(&mut live.store, params, inputs, window)
            }
            Calls::AlarmRule(rule) => rule.init(&mut live.store, params, inputs, window),
        })?;
        self.check_state_size("init", state.len())?;
        Ok(state)
    }

    /// Folds `samples`, in order, into the accumulator `state`, in calls of at most
    /// [`Self::MAX_SAMPLES_PER_FOLD_CALL`] samples. On error `state` is left as it was, and
    /// so are the alarms waiting to be taken (an alarm rule's alarms of a failed fold are
    /// dropped with it: folding the same samples again raises them again).
    pub fn fold(
        &mut self,
        state: &mut Vec<u8>,
        window: Window,
        samples: &[Sample],
    ) -> Result<(), PluginError> {
        let mut chunks = samples.chunks(Self::MAX_SAMPLES_PER_FOLD_CALL);
        let Some(first) = chunks.next() else {
            return Ok(());
        };
        let taken = self.raised.len();
        let folded = (|| {
            let mut folded = self.fold_call(state, window, first)?;
            for chunk in chunks {
                folded = self.fold_call(&folded, window, chunk)?;
            }
            Ok(folded)
        })();
        match folded {
            Ok(folded) => {
                *state = folded;
                Ok(())
            }
            Err(error) => {
                self.raised.truncate(taken);
                Err(error)
            }
        }
    }

    /// The alarms an alarm rule raised in the folds since the last call, in order.
    pub fn take_alarms(&mut self) -> std::vec::Drain<'_, Alarm> {
        self.raised.drain(..)
    }

    /// Samples one `fold` call receives at most; a longer run is folded in several calls
    /// (the WIT promises the same accumulator). The fuel bound is per call, so this keeps
    /// what one call may need proportional to a plugin's cost per sample, whatever the
    /// batch size or the readings' rate (measured for a call of 1,024 samples: Rust `mean`
    /// about 7,000 fuel, Python 9.6 million, JavaScript 45 million and up to 141 million
    /// when its garbage collector runs, so a JavaScript tenant raises the default bound of
    /// 50 million: plugins/README.md). It does not bound `init` or `finish`, which see no
    /// samples.
    pub const MAX_SAMPLES_PER_FOLD_CALL: usize = 1024;

    fn fold_call(
        &mut self,
        state: &[u8],
        window: Window,
        samples: &[Sample],
    ) -> Result<Vec<u8>, PluginError> {
        let folded = match self.plugin.kind() {
            super::PluginKind::AlarmRule => self.rule_fold_call(state, window, samples)?,
            super::PluginKind::Aggregation => self.call("fold", |live| {
                let Calls::Aggregation { fold, .. } = live.calls else {
                    unreachable!("an aggregation's instance")
                };
                // SAFETY: `fold` was type-checked against these types when instantiated.
                let fold = unsafe { TypedFunc::<FoldParams<'_>, FoldResults>::new_unchecked(fold) };
                let (result,) =
                    fold.call(&mut live.store, (state, window, SampleBatch(samples)))?;
                Ok(result)
            })?,
        };
        self.check_state_size("fold", folded.len())?;
        Ok(folded)
    }

    /// A rule's `fold`: the accumulator, and its alarms checked and kept for the caller.
    fn rule_fold_call(
        &mut self,
        state: &[u8],
        window: Window,
        samples: &[Sample],
    ) -> Result<Vec<u8>, PluginError> {
        let (folded, raised) = self.call("fold", |live| {
            let Calls::AlarmRule(rule) = &live.calls else {
                unreachable!("a rule's instance")
            };
            // SAFETY: `fold` was type-checked against these types when instantiated.
            let fold = unsafe {
                TypedFunc::<RuleFoldParams<'_>, RuleFoldResults>::new_unchecked(rule.fold)
            };
            let (result,) = fold.call(&mut live.store, (state, window, SampleBatch(samples)))?;
            Ok(result)
        })?;
        for alarm in raised {
            let alarm = alarm.into_alarm();
            let inside = window.start_ms < alarm.ts_ms && alarm.ts_ms <= window.end_ms;
            if !inside || !alarm.value.is_finite() {
                return Err(PluginError::Returned {
                    plugin: self.plugin.name.clone(),
                    call: "fold",
                    message: format!(
                        "raised an alarm at {} with value {} (an alarm needs a time inside its \
                         window ({}, {}] and a finite value)",
                        alarm.ts_ms, alarm.value, window.start_ms, window.end_ms
                    ),
                });
            }
            self.raised.push(alarm);
        }
        Ok(folded)
    }

    /// An accumulator over the bound fails the call like a trap would: the host never
    /// keeps (or checkpoints) it.
    fn check_state_size(&self, call: &'static str, bytes: usize) -> Result<(), PluginError> {
        let limit = self.plugin.limits.max_state_bytes;
        if bytes > limit {
            return Err(PluginError::StateTooLarge {
                plugin: self.plugin.name.clone(),
                call,
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// The window's value from the accumulator; `None` = no value for this window.
    /// An alarm rule has no value per window: `None`, without calling it.
    pub fn finish(&mut self, state: &[u8], window: Window) -> Result<Option<f64>, PluginError> {
        if self.plugin.kind() == super::PluginKind::AlarmRule {
            return Ok(None);
        }
        let value = self.call("finish", |live| {
            let Calls::Aggregation { bindings, .. } = &live.calls else {
                unreachable!("an aggregation's instance")
            };
            bindings
                .iot_aggregation_fold()
                .call_finish(&mut live.store, state, window)
        })?;
        match value {
            Some(value) if !value.is_finite() => Err(PluginError::NonFinite {
                plugin: self.plugin.name.clone(),
                value,
            }),
            value => Ok(value),
        }
    }

    /// Runs one export under a fresh fuel budget, re-creating the instance first if the last
    /// call trapped, and maps every failure to a PluginError.
    fn call<T>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&mut Live) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        let live = match &mut self.live {
            Some(live) => live,
            None => self
                .live
                .insert(instantiate(&self.plugin, self.meter.as_ref())?),
        };
        if let Some(fuel) = self.plugin.limits.fuel_per_call {
            live.store
                .set_fuel(fuel)
                .expect("fuel metering is on whenever a fuel limit is set");
        }
        if let Some(ticks) = self.plugin.limits.deadline_ticks() {
            live.store.set_epoch_deadline(ticks);
        }
        live.store.data_mut().output.clear();
        live.store.data_mut().determinism.reset();
        self.calls = self.calls.wrapping_add(1);
        let timed = self.meter.is_some() && self.calls % PluginMeter::TIME_ONE_CALL_IN == 1;
        let started = timed.then(Instant::now);
        let outcome = f(live);
        self.last_call_fuel = self
            .plugin
            .limits
            .fuel_per_call
            .zip(live.store.get_fuel().ok())
            .map(|(budget, left)| budget.saturating_sub(left));
        if let Some(meter) = &self.meter {
            let took = started.map(|started| started.elapsed());
            meter.call(call).record(took, !matches!(outcome, Ok(Ok(_))));
            if let Some(burned) = self.last_call_fuel {
                meter.fuel.inc_by(burned);
            }
        }
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PluginError::Returned {
                plugin: self.plugin.name.clone(),
                call,
                message: super::error::bounded_message(message),
            }),
            Err(error) => {
                let printed = live.store.data_mut().output.take();
                self.live = None;
                Err(classify(&self.plugin, call, error, printed))
            }
        }
    }
}

fn instantiate(plugin: &Inner, meter: Option<&PluginMeter>) -> Result<Live, PluginError> {
    let mut limiter = SandboxLimiter::new(&plugin.limits);
    if let Some(meter) = meter {
        limiter.report_memory_to(meter.memory.clone());
    }
    let mut store = Store::new(
        plugin.engine(),
        Sandbox {
            limiter,
            output: CapturedOutput::default(),
            determinism: CallDeterminism::default(),
        },
    );
    store.limiter(|sandbox| &mut sandbox.limiter);
    if let Some(fuel) = plugin.limits.fuel_per_call {
        store
            .set_fuel(fuel)
            .expect("fuel metering is on whenever a fuel limit is set");
    }
    if let Some(ticks) = plugin.limits.deadline_ticks() {
        store.set_epoch_deadline(ticks);
    }
    let instantiated = (|| match &plugin.exports {
        Exports::Aggregation {
            pre,
            indices,
            fold: fold_index,
        } => {
            let instance = pre.instance_pre().instantiate(&mut store)?;
            let bindings = indices.load(&mut store, &instance)?;
            let fold = instance
                .get_func(&mut store, *fold_index)
                .ok_or_else(|| wasmtime::format_err!("no fold export"))?;
            fold.typed::<FoldParams<'_>, FoldResults>(&store)?;
            Ok(Calls::Aggregation { bindings, fold })
        }
        Exports::AlarmRule { pre, rule } => {
            let instance = pre.instantiate(&mut store)?;
            Ok(Calls::AlarmRule(RuleCalls::load(
                &mut store, &instance, rule,
            )?))
        }
    })();
    let printed = store.data_mut().output.take();
    let calls = instantiated.map_err(|e| classify(plugin, "instantiation", e, printed))?;
    Ok(Live { store, calls })
}

/// Turns a wasmtime error of a call into the PluginError that says what happened; what the
/// plugin printed during the call (a panic's message) is part of a trap's detail.
fn classify(
    plugin: &Inner,
    call: &'static str,
    error: wasmtime::Error,
    printed: Option<String>,
) -> PluginError {
    let name = plugin.name.clone();
    if let Some(Trap::OutOfFuel) = error.downcast_ref::<Trap>() {
        return PluginError::OutOfFuel {
            plugin: name,
            call,
            fuel: plugin.limits.fuel_per_call.unwrap_or(0),
        };
    }
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return PluginError::TooSlow {
            plugin: name,
            call,
            bound: plugin.limits.wall_clock_per_call.unwrap_or_default(),
        };
    }
    if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        return PluginError::OutOfMemory {
            plugin: name,
            call,
            detail: cap.to_string(),
        };
    }
    let message = format!("{error:#}");
    let mut detail = sandbox::stub_called(&message).unwrap_or(message);
    if let Some(printed) = printed {
        // What it printed says where and why (a panic names its file and line), so the
        // trap itself without its WebAssembly backtrace is enough beside it; one line, so
        // logs and error records keep it whole. Setting RUST_BACKTRACE is not possible (the
        // environment is empty), so std's note about it goes.
        if let Some(trap) = error.downcast_ref::<Trap>() {
            detail = trap.to_string();
        }
        let lines: Vec<&str> = printed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        detail = format!("{}; {detail}", lines.join(" / "));
    }
    PluginError::Trap {
        plugin: name,
        call,
        detail: super::error::bounded_message(detail),
    }
}
