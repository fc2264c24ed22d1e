//! What a publishing run did, and how it is told to the user.

use std::time::Duration;

use iot_protocol::time::format_ts;

use crate::summary::Summary;

/// What a run did.
#[derive(Debug, Clone)]
pub struct PublishReport {
    pub bootstrap: String,
    pub topic: String,
    pub sites: Vec<String>,
    pub seed: u64,
    /// Readings handed to Kafka, by kind and sensor.
    pub summary: Summary,
    /// Readings Kafka acknowledged.
    pub acknowledged: u64,
    /// Steps sent, and the first and last step's time.
    pub steps: u64,
    pub first_step_ts: Option<i64>,
    pub last_step_ts: Option<i64>,
    /// The run was stopped (Ctrl-C) before its end.
    pub interrupted: bool,
    pub elapsed: Duration,
    /// Why the run failed after it started sending (the counts say how far it got).
    pub failure: Option<String>,
}

impl PublishReport {
    pub fn readings_per_second(&self) -> f64 {
        self.summary.total() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for PublishReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.failure.is_some() {
            "handed"
        } else {
            "sent"
        };
        writeln!(
            f,
            "{verb} {} readings to topic {:?} at {} in {:.1} s ({:.0} readings/s){}",
            self.summary.total(),
            self.topic,
            self.bootstrap,
            self.elapsed.as_secs_f64(),
            self.readings_per_second(),
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        )?;
        let sites = match self.sites.as_slice() {
            [one] => one.clone(),
            [first, .., last] => format!("{first}..{last}"),
            [] => String::new(),
        };
        write!(
            f,
            "{} site(s) {sites}, seed {}, {} step(s)",
            self.sites.len(),
            self.seed,
            self.steps
        )?;
        if let (Some(first), Some(last)) = (self.first_step_ts, self.last_step_ts) {
            write!(f, " from {} to {}", format_ts(first), format_ts(last))?;
        }
        writeln!(f)?;
        write!(f, "{}", self.summary)?;
        if self.acknowledged != self.summary.total() {
            writeln!(
                f,
                "acknowledged by Kafka: {} of {}",
                self.acknowledged,
                self.summary.total()
            )?;
        }
        if let Some(failure) = &self.failure {
            writeln!(f, "FAILED: {failure}")?;
        }
        Ok(())
    }
}
