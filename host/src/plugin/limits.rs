/// Resource bounds of every plugin call, configurable per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Fuel (roughly, WebAssembly instructions) one call may burn.
    pub fuel_per_call: u64,
    /// Linear memory one instance may grow to, in bytes.
    pub max_memory_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            fuel_per_call: 50_000_000,
            max_memory_bytes: 16 << 20,
        }
    }
}
