//! Where the host's time goes: wall time per pipeline stage, summed since the process
//! started.
//!
//! Each stage is timed where it runs ([`Stage::time`] or a [`StageTimer`]); the totals are
//! process-wide counters (a handful of relaxed atomic adds per batch, not per reading), read
//! by `scripts/bench-pipeline --profile` and logged with every progress line. The fold side
//! and the durable side run concurrently, so the stages' times add up to more than the
//! wall time of a run: that overlap is the point. Several hosts in one process (tests)
//! share the counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One stage of the pipeline, in the order a batch passes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the source's next batch (fetch and copy out of the Kafka client).
    Read,
    /// Decoding records, classifying lateness, routing samples to windows.
    Accept,
    /// Plugin calls (fold, finish) and emitting the batch's outputs.
    Fold,
    /// Building the checkpoints of the partitions the batch moved.
    Checkpoint,
    /// The fold side waiting because the most batches allowed are in flight (backpressure:
    /// the durable side is the slower one).
    Backpressure,
    /// Publishing the batch's topic records and waiting for their acknowledgements.
    Publish,
    /// Encoding the batch's store transaction (samples and checkpoints).
    Encode,
    /// The store's round trips: the transaction and the checks before it.
    Store,
    /// Committing source offsets after a batch became durable (on the fold side, which
    /// owns the source).
    Commit,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Read,
        Stage::Accept,
        Stage::Fold,
        Stage::Checkpoint,
        Stage::Backpressure,
        Stage::Publish,
        Stage::Encode,
        Stage::Store,
        Stage::Commit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Accept => "accept",
            Stage::Fold => "fold",
            Stage::Checkpoint => "checkpoint",
            Stage::Backpressure => "backpressure",
            Stage::Publish => "publish",
            Stage::Encode => "encode",
            Stage::Store => "store",
            Stage::Commit => "commit",
        }
    }

    /// Which side of the pipeline runs the stage.
    pub fn side(self) -> &'static str {
        match self {
            Stage::Read
            | Stage::Accept
            | Stage::Fold
            | Stage::Checkpoint
            | Stage::Backpressure
            | Stage::Commit => "fold",
            Stage::Publish | Stage::Encode | Stage::Store => "durable",
        }
    }

    /// Adds `elapsed` to the stage's total.
    pub fn add(self, elapsed: Duration) {
        NANOS[self as usize].fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        COUNT[self as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `f`, adding its wall time to the stage.
    pub fn time<T>(self, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let value = f();
        self.add(started.elapsed());
        value
    }

    /// Starts timing the stage until the timer is dropped (for async code).
    pub fn start(self) -> StageTimer {
        StageTimer {
            stage: self,
            started: Instant::now(),
        }
    }
}

/// Adds its lifetime to a stage when dropped.
pub struct StageTimer {
    stage: Stage,
    started: Instant,
}

impl Drop for StageTimer {
    fn drop(&mut self) {
        self.stage.add(self.started.elapsed());
    }
}

const STAGES: usize = Stage::ALL.len();
static NANOS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];
static COUNT: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];
/// Checkpoint bytes the batches wrote, and what rewriting every checkpoint whole would
/// have written (the delta's saving).
static CHECKPOINT_BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static CHECKPOINT_BYTES_WHOLE: AtomicU64 = AtomicU64::new(0);

/// When partitions were last assigned to a consumer in this process (the start of "from
/// assignment to caught up").
static LAST_ASSIGNMENT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// Notes that the group just assigned partitions to this process.
pub fn partitions_assigned() {
    *LAST_ASSIGNMENT.lock().expect("assignment instant") = Some(Instant::now());
}

/// When partitions were last assigned to this process, if ever.
pub fn last_assignment() -> Option<Instant> {
    *LAST_ASSIGNMENT.lock().expect("assignment instant")
}

/// Counts one checkpoint write: `written` bytes sent, `whole` bytes the whole checkpoint has.
pub fn checkpoint_written(written: usize, whole: usize) {
    CHECKPOINT_BYTES_WRITTEN.fetch_add(written as u64, Ordering::Relaxed);
    CHECKPOINT_BYTES_WHOLE.fetch_add(whole as u64, Ordering::Relaxed);
}

/// The totals of every stage at one instant; subtract two to get a run's share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Breakdown {
    pub nanos: [u64; STAGES],
    pub count: [u64; STAGES],
    pub checkpoint_bytes_written: u64,
    pub checkpoint_bytes_whole: u64,
}

impl Breakdown {
    pub fn now() -> Breakdown {
        let mut b = Breakdown::default();
        for i in 0..STAGES {
            b.nanos[i] = NANOS[i].load(Ordering::Relaxed);
            b.count[i] = COUNT[i].load(Ordering::Relaxed);
        }
        b.checkpoint_bytes_written = CHECKPOINT_BYTES_WRITTEN.load(Ordering::Relaxed);
        b.checkpoint_bytes_whole = CHECKPOINT_BYTES_WHOLE.load(Ordering::Relaxed);
        b
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Breakdown) -> Breakdown {
        let mut b = *self;
        for i in 0..STAGES {
            b.nanos[i] -= earlier.nanos[i];
            b.count[i] -= earlier.count[i];
        }
        b.checkpoint_bytes_written -= earlier.checkpoint_bytes_written;
        b.checkpoint_bytes_whole -= earlier.checkpoint_bytes_whole;
        b
    }

    pub fn seconds(&self, stage: Stage) -> f64 {
        self.nanos[stage as usize] as f64 / 1e9
    }

    pub fn count(&self, stage: Stage) -> u64 {
        self.count[stage as usize]
    }

    /// `stage=seconds` pairs and the checkpoint bytes written (of a whole rewrite's), for a
    /// log line.
    pub fn summary(&self) -> String {
        let mut summary = Stage::ALL
            .iter()
            .map(|&s| format!("{}={:.2}s", s.name(), self.seconds(s)))
            .collect::<Vec<_>>()
            .join(" ");
        summary.push_str(&format!(
            " checkpoint_bytes={}/{}",
            self.checkpoint_bytes_written, self.checkpoint_bytes_whole
        ));
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_stage_adds_its_time_and_one_count() {
        let before = Breakdown::now();
        Stage::Commit.time(|| std::thread::sleep(Duration::from_millis(5)));
        {
            let _timer = Stage::Commit.start();
            std::thread::sleep(Duration::from_millis(5));
        }
        let run = Breakdown::now().since(&before);
        assert!(run.count(Stage::Commit) >= 2);
        assert!(run.seconds(Stage::Commit) >= 0.010);
    }
}
