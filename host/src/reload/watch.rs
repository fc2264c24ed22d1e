//! The watcher: file events → debounced per-tenant rebuilds → [`TenantUpdate`]s.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{TenantLoader, TenantUpdate, Updates};
use crate::tenant::TenantBuild;

/// Quiet time after the last file event before building: a deploy of several files (or an
/// editor's save in several steps) becomes one swap.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the file watcher alive; dropping it stops watching.
pub struct Watch {
    _watcher: RecommendedWatcher,
}

/// What one tenant's watch looks at.
struct Watched {
    plugin_dir: PathBuf,
    /// (folder, file name) of the pipeline file.
    pipeline: Option<(PathBuf, std::ffi::OsString)>,
}

impl Watched {
    fn new(loader: &TenantLoader) -> anyhow::Result<Watched> {
        let spec = &loader.spec;
        let plugin_dir = std::fs::canonicalize(&spec.plugin_dir).with_context(|| {
            format!(
                "tenant {}: plugin folder {} does not exist (create it, or build plugins with scripts/build-plugins)",
                spec.name,
                spec.plugin_dir.display()
            )
        })?;
        let pipeline = match &spec.pipeline_file {
            None => None,
            Some(file) => {
                let path = std::fs::canonicalize(file).with_context(|| {
                    format!(
                        "tenant {}: pipeline file {} does not exist",
                        spec.name,
                        file.display()
                    )
                })?;
                let dir = path.parent().expect("a file has a folder").to_path_buf();
                Some((dir, path.file_name().expect("a file has a name").to_owned()))
            }
        };
        Ok(Watched {
            plugin_dir,
            pipeline,
        })
    }

    /// A plugin file (`*.wasm`, not hidden) in the plugin folder, or the pipeline file.
    fn concerns(&self, path: &Path) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let plugin = dir == self.plugin_dir && {
            let name = name.to_string_lossy();
            name.ends_with(".wasm") && !name.starts_with('.')
        };
        plugin
            || self
                .pipeline
                .as_ref()
                .is_some_and(|(d, n)| d == dir && n == name)
    }

    fn folders(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.plugin_dir.as_path())
            .chain(self.pipeline.as_ref().map(|(d, _)| d.as_path()))
    }
}

/// Watches every tenant's plugin folder and pipeline file. `current` holds the builds the
/// engine started with, so that a change that builds the same thing is no swap.
pub fn watch_tenants(
    loaders: Vec<TenantLoader>,
    current: Vec<TenantBuild>,
) -> anyhow::Result<(Watch, Updates)> {
    let watched: Vec<Watched> = loaders
        .iter()
        .map(Watched::new)
        .collect::<anyhow::Result<_>>()?;
    let (signal_tx, signals) = mpsc::unbounded_channel::<usize>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let event = match event {
            Ok(event) => event,
            Err(e) => return tracing::warn!("file watcher: {e}"),
        };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for (tenant, w) in watched.iter().enumerate() {
            if event.paths.iter().any(|p| w.concerns(p)) {
                let _ = signal_tx.send(tenant);
            }
        }
    })
    .context("cannot start the file watcher (inotify)")?;
    let mut folders: BTreeSet<PathBuf> = BTreeSet::new();
    for loader in &loaders {
        folders.extend(Watched::new(loader)?.folders().map(Path::to_path_buf));
    }
    for folder in &folders {
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", folder.display()))?;
        tracing::info!(folder = %folder.display(), "watching for new plugin builds and pipeline edits");
    }
    let (update_tx, updates) = mpsc::unbounded_channel();
    tokio::spawn(rebuild_loop(loaders, current, signals, update_tx));
    Ok((Watch { _watcher: watcher }, Updates::new(updates)))
}

async fn rebuild_loop(
    loaders: Vec<TenantLoader>,
    current: Vec<TenantBuild>,
    mut signals: mpsc::UnboundedReceiver<usize>,
    updates: mpsc::UnboundedSender<TenantUpdate>,
) {
    let mut loaders: Vec<Option<TenantLoader>> = loaders.into_iter().map(Some).collect();
    let mut current = current;
    let mut last_error: Vec<Option<String>> = vec![None; loaders.len()];
    while let Some(first) = signals.recv().await {
        let detected = Instant::now();
        let mut dirty = BTreeSet::from([first]);
        loop {
            match tokio::time::timeout(DEBOUNCE, signals.recv()).await {
                Ok(Some(tenant)) => {
                    dirty.insert(tenant);
                }
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        for tenant in dirty {
            let loader = loaders[tenant]
                .take()
                .expect("a loader is back after each build");
            let started = Instant::now();
            let (loader, result) = tokio::task::spawn_blocking(move || {
                let mut loader = loader;
                let result = loader.load();
                (loader, result)
            })
            .await
            .expect("building a tenant does not panic");
            let name = loader.spec.name.clone();
            loaders[tenant] = Some(loader);
            let update = match result {
                Ok(build) if build.same_as(&current[tenant]) => {
                    last_error[tenant] = None;
                    continue; // e.g. a plugin rewritten with the same bytes
                }
                Ok(build) => {
                    last_error[tenant] = None;
                    current[tenant] = build.clone();
                    TenantUpdate::Build {
                        tenant,
                        build,
                        detected,
                        built_in: started.elapsed(),
                    }
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    if last_error[tenant].as_ref() == Some(&error) {
                        continue;
                    }
                    tracing::error!(tenant = %name, "a changed plugin or pipeline does not build; the tenant keeps its current build: {error}");
                    last_error[tenant] = Some(error.clone());
                    TenantUpdate::Refused {
                        tenant,
                        what: "plugin or pipeline change".into(),
                        error,
                    }
                }
            };
            if updates.send(update).is_err() {
                return; // the runner is gone
            }
        }
    }
}
