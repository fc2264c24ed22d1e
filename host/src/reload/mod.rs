//! Hot swap, outside the hot path: watch each tenant's plugin folder and pipeline file,
//! build what changed (read, compile, validate against the WIT and the tenant's limits) on
//! a blocking thread, and hand the finished [`TenantBuild`] to the runner, which applies it
//! between two batches ([`crate::engine::Engine::apply`]).
//!
//! Deploying safely: write the new file under another name in the same folder, then rename
//! it (`cp x.wasm dir/.x.wasm.tmp && mv dir/.x.wasm.tmp dir/x.wasm`). The watcher only
//! looks at `*.wasm` files whose name does not start with a dot, and a rename is atomic, so
//! a half-written plugin is never loaded. A file that does not load anyway (truncated,
//! wrong interface, forbidden import) is refused with a `plugin-errors` record and the
//! tenant keeps its current build.

mod loader;
mod watch;

pub use loader::TenantLoader;
pub use watch::{watch_tenants, Watch};

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::tenant::TenantBuild;

/// What the watcher tells the runner.
#[derive(Debug)]
pub enum TenantUpdate {
    /// A tenant's new pipeline and plugins, compiled and validated.
    Build {
        tenant: usize,
        build: TenantBuild,
        /// When the first file change of this build was seen.
        detected: Instant,
        /// How long reading, compiling and validating took.
        built_in: Duration,
    },
    /// A change that could not be built; the tenant keeps its current build.
    Refused {
        tenant: usize,
        what: String,
        error: String,
    },
}

/// The runner's end of the updates channel; [`Updates::none`] when nothing is watched.
pub struct Updates(Option<UnboundedReceiver<TenantUpdate>>);

impl Updates {
    pub fn none() -> Updates {
        Updates(None)
    }

    pub fn new(receiver: UnboundedReceiver<TenantUpdate>) -> Updates {
        Updates(Some(receiver))
    }

    /// The next update; never resolves when there is no watcher (or it stopped).
    pub async fn recv(&mut self) -> TenantUpdate {
        if let Some(receiver) = &mut self.0 {
            if let Some(update) = receiver.recv().await {
                return update;
            }
            self.0 = None;
        }
        std::future::pending().await
    }
}
