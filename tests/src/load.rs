//! Load that runs until the test has seen what it waits for.
//!
//! A test that deploys, crashes or restarts something "during the load" must not guess how
//! long the load has to last: on a slow or busy machine a fixed-length load ends before the
//! event it was meant to surround. [`Load`] publishes simulated readings at a steady pace
//! with no end of its own; the test stops it once the events it waits for have happened,
//! and then reads back what was really sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use iot_simulator::{publish, Pace, PublishConfig, PublishReport, SimConfig};

use crate::fixture::TestScope;

/// A simulator publishing until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<PublishReport>,
}

impl Load {
    /// Publishes `sim` (its `days` is ignored: the load runs until stopped) to `topic` at
    /// `steps_per_second` simulated 15-minute steps per second.
    pub fn start(
        scope: &TestScope,
        topic: &str,
        mut sim: SimConfig,
        steps_per_second: f64,
    ) -> Load {
        sim.days = None;
        let config = PublishConfig::fast(&scope.services.kafka_bootstrap, topic, sim);
        Load::start_with(config, steps_per_second)
    }

    /// [`Load::start`] with a publishing configuration of the test's own (a layout, a
    /// format); its `days` and pace are replaced.
    pub fn start_with(mut config: PublishConfig, steps_per_second: f64) -> Load {
        config.sim.days = None;
        config.pace = Pace::RealTime { steps_per_second };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let report = publish(config, flag).await.expect("the simulator ran");
            assert!(
                report.failure.is_none(),
                "the load failed: {:?}",
                report.failure
            );
            report
        });
        Load { stop, task }
    }

    /// Still publishing (it only ends when stopped, or when it failed).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Panics if the load ended by itself (it failed: the panic says why).
    pub async fn assert_running(&mut self) {
        if self.task.is_finished() {
            let ended = (&mut self.task).await;
            panic!("the load ended before it was stopped: {ended:?}");
        }
    }

    /// Stops after the current step and waits until Kafka acknowledged everything sent.
    pub async fn stop(self) -> PublishReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load ran")
    }
}
