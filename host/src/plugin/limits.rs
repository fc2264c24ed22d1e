//! Resource bounds of plugin calls and the store limiter that enforces the memory cap.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Resource bounds of every plugin call; one set per [`PluginHost`](super::PluginHost)
/// (so per tenant, if tenants get hosts of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel (about one unit per WebAssembly instruction) one call may burn: the CPU bound
    /// that stops a plugin that loops. `None` turns metering off, which makes plugin code
    /// a little faster but lets a looping plugin hang its thread: for benchmarks and
    /// trusted plugins only.
    pub fuel_per_call: Option<u64>,
    /// Wall-clock time one call may take (epoch interruption, checked every
    /// [`DEADLINE_TICK`](Self::DEADLINE_TICK)): a bound in seconds rather than in work, and
    /// cheaper to check than fuel (see docs/BENCHMARKS.md). Off by default because it is
    /// not deterministic: a call near the bound could fail on one run and pass on a replay,
    /// which fuel never does. It does not bound a call to within less than one tick.
    pub wall_clock_per_call: Option<Duration>,
    /// Linear memory one instance may grow to, in bytes (instance-wide, all memories).
    pub max_memory_bytes: usize,
    /// Bytes one window's accumulator may have, as returned by `init` or `fold`. The host
    /// keeps every open window's accumulator in memory and writes it into each checkpoint
    /// of its partition, so this bounds what one plugin can make the host and Redis hold:
    /// at most sites × outputs × open days × this. It does not bound the readings a held
    /// window keeps (those are input, bounded by the allowed lateness).
    pub max_state_bytes: usize,
    /// Which WASI the sandbox gives plugins: none (the default), or deterministic clocks,
    /// randomness and an empty filesystem for runtimes that import them (`deterministic.rs`).
    pub wasi: WasiAccess,
}

/// The WASI a tenant's plugins get (`wasi = "deny-all" | "deterministic"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WasiAccess {
    /// No capability: importing clocks, randomness, files or sockets refuses the plugin.
    #[default]
    DenyAll,
    /// Clocks that always read the same, a fixed-seed random source, no preopened
    /// directory; sockets only as stubs that trap when called; HTTP still refused.
    Deterministic,
}

impl WasiAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            WasiAccess::DenyAll => "deny-all",
            WasiAccess::Deterministic => "deterministic",
        }
    }
}

impl std::str::FromStr for WasiAccess {
    type Err = String;

    fn from_str(text: &str) -> Result<WasiAccess, String> {
        match text {
            "deny-all" => Ok(WasiAccess::DenyAll),
            "deterministic" => Ok(WasiAccess::Deterministic),
            other => Err(format!(
                "wasi {other:?}: use \"deny-all\" (the default) or \"deterministic\""
            )),
        }
    }
}

impl PluginLimits {
    /// How often the engine's epoch advances when a wall-clock bound is set: the
    /// resolution of that bound.
    pub const DEADLINE_TICK: Duration = Duration::from_millis(10);
    /// 50 million fuel is tens of milliseconds of CPU, thousands of times what a fold
    /// costs (measured: ~850 per call plus ~6 per sample for `sum`, ~23 for `daily-diff`).
    pub const DEFAULT_FUEL_PER_CALL: u64 = 50_000_000;
    /// A plugin needs about 1.1 MiB (1 MiB of stack, its data, a small heap).
    pub const DEFAULT_MAX_MEMORY_BYTES: usize = 32 << 20;
    /// Shipped plugins keep 8–24 bytes; 64 KiB leaves room for sketches and histograms
    /// while a partition of 100 sites × 20 outputs × 3 open days stays under 400 MiB at
    /// worst, and far under it in practice.
    pub const DEFAULT_MAX_STATE_BYTES: usize = 64 << 10;
    /// An error message a plugin returns (or a trap's text) is cut to this many bytes
    /// before it is logged or published: it goes into `plugin-errors` records, whose size
    /// Kafka bounds (1 MB by default), and a plugin must not be able to make one refused.
    pub const MAX_MESSAGE_BYTES: usize = 2048;
    /// A plugin component file may have at most this many bytes: builds are archived in
    /// Redis inside a batch's transaction (shipped plugins are 20–60 KiB; a Python or
    /// JavaScript component with its interpreter is 10–30 MiB).
    pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel_per_call: Some(Self::DEFAULT_FUEL_PER_CALL),
            wall_clock_per_call: None,
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_BYTES,
            max_state_bytes: Self::DEFAULT_MAX_STATE_BYTES,
            wasi: WasiAccess::DenyAll,
        }
    }
}

/// Why a memory growth was refused; travels inside the wasmtime error as its cause.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {limit} bytes exceeded (the plugin asked for {wanted} bytes)")]
pub(super) struct MemoryCapExceeded {
    pub limit: usize,
    pub wanted: usize,
}

/// The store's limiter: refuses (with a trap) any memory growth beyond the cap, and keeps
/// tables and instance counts small. Trapping rather than failing the growth quietly
/// gives a clear error instead of whatever the plugin's allocator does on failure.
pub(super) struct SandboxLimiter {
    max_memory_bytes: usize,
    /// Linear memory the instance has now.
    memory_bytes: usize,
    /// The plugin's memory gauge (`iot_plugin_memory_bytes`), once the instance has a meter.
    memory_gauge: Option<prometheus_client::metrics::gauge::Gauge>,
}

/// Table elements an instance may have (function references; plugins need a few dozen).
const MAX_TABLE_ELEMENTS: usize = 10_000;

impl SandboxLimiter {
    pub fn new(limits: &PluginLimits) -> SandboxLimiter {
        SandboxLimiter {
            max_memory_bytes: limits.max_memory_bytes,
            memory_bytes: 0,
            memory_gauge: None,
        }
    }

    /// Linear memory the instance has grown to.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Counts this instance's memory in `gauge` from now until it is dropped.
    pub fn report_memory_to(&mut self, gauge: prometheus_client::metrics::gauge::Gauge) {
        gauge.inc_by(self.memory_bytes as i64);
        if let Some(old) = self.memory_gauge.replace(gauge) {
            old.dec_by(self.memory_bytes as i64);
        }
    }
}

impl Drop for SandboxLimiter {
    fn drop(&mut self) {
        if let Some(gauge) = &self.memory_gauge {
            gauge.dec_by(self.memory_bytes as i64);
        }
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                limit: self.max_memory_bytes,
                wanted: desired,
            }));
        }
        let grown = desired.saturating_sub(current);
        self.memory_bytes += grown;
        if let Some(gauge) = &self.memory_gauge {
            gauge.inc_by(grown as i64);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

impl PluginLimits {
    /// The wall-clock bound in epoch ticks (at least one).
    pub(super) fn deadline_ticks(&self) -> Option<u64> {
        self.wall_clock_per_call.map(|bound| {
            let ticks = bound.as_nanos() / Self::DEADLINE_TICK.as_nanos();
            (ticks as u64).max(1)
        })
    }
}
