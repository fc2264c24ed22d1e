use std::path::PathBuf;

/// Why a plugin could not be loaded or a call failed. Every failure of a plugin is one of
/// these (never a panic of the host); messages say what to do next. After a call fails
/// with [`OutOfFuel`](Self::OutOfFuel), [`TooSlow`](Self::TooSlow), [`OutOfMemory`](Self::OutOfMemory) or
/// [`Trap`](Self::Trap), the [`PluginInstance`](super::PluginInstance) starts a fresh
/// instance for its next call by itself.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{plugin} is not a WebAssembly component this host can run ({detail}); build plugins \
         with `cargo build --target wasm32-wasip2 --profile plugin` (scripts/build-plugins)"
    )]
    NotAComponent { plugin: String, detail: String },
    #[error(
        "plugin {plugin} imports {import}, which plugins may not use ({why}); remove the code \
         that needs it (plugins get no files, network, clocks, randomness or environment)"
    )]
    ForbiddenImport {
        plugin: String,
        import: String,
        why: &'static str,
    },
    #[error(
        "plugin {plugin} does not implement the WIT interface iot:aggregation/fold@1.0.0 \
         (or, for an alarm rule, iot:aggregation/alarm-rule@1.0.0) ({detail}); build it \
         against wit/aggregation.wit"
    )]
    WrongInterface { plugin: String, detail: String },
    #[error(
        "plugin {plugin} ran out of fuel ({fuel} per call) in {call}: it loops or does too \
         much work per call; fix the plugin, or raise the fuel limit if the work is legitimate"
    )]
    OutOfFuel {
        plugin: String,
        call: &'static str,
        fuel: u64,
    },
    #[error(
        "plugin {plugin} took longer than its wall-clock bound ({bound:?} per call) in {call}: \
         it loops or does too much work per call; fix the plugin, or raise the bound if the \
         work is legitimate"
    )]
    TooSlow {
        plugin: String,
        call: &'static str,
        bound: std::time::Duration,
    },
    #[error(
        "plugin {plugin} ran out of memory in {call}: {detail}; fix the plugin, or raise the \
         memory limit if it legitimately needs more"
    )]
    OutOfMemory {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    #[error(
        "plugin {plugin} trapped in {call}: {detail}; the plugin has a bug, fix and rebuild it"
    )]
    Trap {
        plugin: String,
        call: &'static str,
        detail: String,
    },
    #[error("plugin {plugin} returned an error from {call}: {message}")]
    Returned {
        plugin: String,
        call: &'static str,
        message: String,
    },
    #[error("plugin {plugin} returned a non-finite value ({value}) from finish; fix the plugin")]
    NonFinite { plugin: String, value: f64 },
    #[error(
        "plugin {plugin} returned an accumulator of {bytes} bytes from {call}, over the bound \
         of {limit} bytes per window; keep less per window (a summary, not the readings), or \
         raise the tenant's max_state_bytes if the plugin legitimately needs more"
    )]
    StateTooLarge {
        plugin: String,
        call: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error(
        "plugin file {path} has {bytes} bytes, over the bound of {limit} bytes per component; \
         build it with `--profile plugin` (optimised, stripped)"
    )]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
    },
}

/// Cuts a plugin's message to [`super::PluginLimits::MAX_MESSAGE_BYTES`] (on a character
/// boundary), saying how long it was.
pub fn bounded_message(mut message: String) -> String {
    let limit = super::PluginLimits::MAX_MESSAGE_BYTES;
    if message.len() <= limit {
        return message;
    }
    let total = message.len();
    let mut cut = limit;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!("… ({total} bytes, cut to {limit})"));
    message
}
