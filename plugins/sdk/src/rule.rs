//! Alarm rules: the trait a rule implements, the alarms it raises, and the bridge to the
//! WIT interface `iot:aggregation/alarm-rule` ([`export_rule!`]).
//!
//! [`export_rule!`]: crate::export_rule

use std::marker::PhantomData;

use crate::rule_bindings::exports::iot::aggregation::alarm_rule as wit;
use crate::{Error, Params, Result, Sample, State, Window};

/// An alarm rule: like an [`Aggregation`](crate::Aggregation), it folds a window's
/// readings into an accumulator the host keeps (same `init`, same hot swap by
/// [`STATE_VERSION`](AlarmRule::STATE_VERSION), same rule that one batch or several give
/// the same bytes), but instead of a value per window it raises alarms as readings arrive.
///
/// Raise alarms only from the samples of the current call (and the accumulator), so that
/// folding in one batch or several raises the same alarms in the same order.
pub trait AlarmRule: 'static {
    /// A short name for logs and errors; errors are shown as `"<NAME>: …"`.
    const NAME: &'static str;
    /// The version of the accumulator's layout.
    const STATE_VERSION: u32;
    const MIN_INPUTS: u32 = 1;
    const MAX_INPUTS: u32 = 1;

    type Params: Params;
    type State: State + Default;

    /// A new, empty accumulator for `window`. By default, `State::default()`.
    fn init(params: Self::Params, inputs: u32, window: Window) -> Result<Self::State> {
        let _ = (params, inputs, window);
        Ok(Self::State::default())
    }

    /// Folds `samples`, in order, into `state`, raising alarms into `alarms`.
    fn fold(
        state: &mut Self::State,
        window: Window,
        samples: &[Sample],
        alarms: &mut Alarms,
    ) -> Result<()>;
}

/// The alarms one `fold` call raises, in order.
#[derive(Debug, Default)]
pub struct Alarms(Vec<wit::Alarm>);

impl Alarms {
    /// Raises an alarm at `ts_ms` (a reading's time) with `value` (what the alarm series
    /// stores) and `evidence` (why, for people; the host keeps at most 256 bytes).
    pub fn raise(&mut self, ts_ms: i64, value: f64, evidence: impl Into<String>) {
        self.0.push(wit::Alarm {
            ts_ms,
            value,
            evidence: evidence.into(),
        });
    }

    /// How many were raised in this call.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(ts_ms, value, evidence)` of each, in order (for unit tests).
    pub fn iter(&self) -> impl Iterator<Item = (i64, f64, &str)> {
        self.0
            .iter()
            .map(|a| (a.ts_ms, a.value, a.evidence.as_str()))
    }
}

/// Exports an [`AlarmRule`] as the plugin's component interface. Once per plugin crate:
/// `iot_plugin::export_rule!(MotionAtNight);`.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        #[doc(hidden)]
        type __IotRuleExport = $crate::rule::RuleAdapter<$rule>;
        $crate::rule_bindings::__export_alarm_rule!(__IotRuleExport with_types_in $crate::rule_bindings);
    };
}

/// The WIT interface, implemented for the rule `R`.
#[doc(hidden)]
pub struct RuleAdapter<R>(PhantomData<R>);

impl<R: AlarmRule> RuleAdapter<R> {
    fn named(error: Error) -> String {
        format!("{}: {}", R::NAME, error.message())
    }
}

fn window(w: wit::Window) -> Window {
    Window {
        start_ms: w.start_ms,
        end_ms: w.end_ms,
    }
}

impl<R: AlarmRule> wit::Guest for RuleAdapter<R> {
    fn info() -> wit::RuleInfo {
        wit::RuleInfo {
            name: R::NAME.into(),
            state_version: R::STATE_VERSION,
            min_inputs: R::MIN_INPUTS,
            max_inputs: R::MAX_INPUTS,
        }
    }

    fn init(
        params: Vec<(String, String)>,
        inputs: u32,
        w: wit::Window,
    ) -> std::result::Result<Vec<u8>, String> {
        if !(R::MIN_INPUTS..=R::MAX_INPUTS).contains(&inputs) {
            return Err(Self::named(Error::new(format!(
                "takes {} to {} inputs, the output declares {inputs}",
                R::MIN_INPUTS,
                R::MAX_INPUTS
            ))));
        }
        let params = R::Params::parse(&params).map_err(Self::named)?;
        let state = R::init(params, inputs, window(w)).map_err(Self::named)?;
        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        Ok(bytes)
    }

    fn fold(
        mut bytes: Vec<u8>,
        w: wit::Window,
        samples: Vec<wit::Sample>,
    ) -> std::result::Result<(Vec<u8>, Vec<wit::Alarm>), String> {
        let mut state = R::State::decode(&bytes).map_err(Self::named)?;
        let samples: Vec<Sample> = samples
            .iter()
            .map(|s| Sample {
                input: s.input,
                ts_ms: s.ts_ms,
                value: s.value,
            })
            .collect();
        let mut alarms = Alarms::default();
        R::fold(&mut state, window(w), &samples, &mut alarms).map_err(Self::named)?;
        bytes.clear();
        state.encode(&mut bytes);
        Ok((bytes, alarms.0))
    }
}
