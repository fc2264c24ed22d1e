//! `motion-low-energy`, an alarm rule: raises an alarm for every motion event while the
//! day's energy so far is under `threshold` (Wh): someone is in a building that uses
//! almost nothing. Input 0 is the motion sensor (a non-zero reading is motion); inputs 1
//! and on are energy sensors whose readings are added up as they arrive (e.g. HVAC1,
//! HVAC2, MiAC1, MiAC2). "So far" is in the order readings arrive: the energy folded
//! before the motion event. The alarm's value is that energy.

use iot_plugin::{AlarmRule, Alarms, Params, Result, Sample, State, Window};

#[derive(Params)]
pub struct Settings {
    threshold: f64,
}

/// State version 1: 16 bytes.
#[derive(Default, State)]
pub struct SoFar {
    threshold: f64,
    energy: f64,
}

pub struct MotionLowEnergy;

impl AlarmRule for MotionLowEnergy {
    const NAME: &'static str = "motion-low-energy";
    const STATE_VERSION: u32 = 1;
    const MIN_INPUTS: u32 = 2;
    const MAX_INPUTS: u32 = 16;
    type Params = Settings;
    type State = SoFar;

    fn init(settings: Settings, _: u32, _: Window) -> Result<SoFar> {
        Ok(SoFar {
            threshold: settings.threshold,
            energy: 0.0,
        })
    }

    fn fold(so_far: &mut SoFar, _: Window, samples: &[Sample], alarms: &mut Alarms) -> Result<()> {
        for sample in samples {
            if sample.input > 0 {
                so_far.energy += sample.value;
            } else if sample.value != 0.0 && so_far.energy < so_far.threshold {
                let evidence = format!(
                    "motion with {} Wh used so far today (threshold {} Wh)",
                    so_far.energy, so_far.threshold
                );
                alarms.raise(sample.ts_ms, so_far.energy, evidence);
            }
        }
        Ok(())
    }
}

iot_plugin::export_rule!(MotionLowEnergy);
