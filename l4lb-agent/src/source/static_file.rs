//! The static VIP file: read at start, re-read on SIGHUP and whenever the file
//! changes (watched through its directory, so editors that replace the file by
//! rename are seen too). A file that fails to parse changes nothing.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::{
    config::{self, ConfigError},
    model::DesiredState,
    naming::VipAllocator,
};

pub struct StaticSource {
    /// None = the embedded default (examples/demo.yaml).
    path: Option<PathBuf>,
    alloc: VipAllocator,
}

impl StaticSource {
    pub fn new(path: Option<PathBuf>) -> Self {
        StaticSource {
            path,
            alloc: VipAllocator::default(),
        }
    }

    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "embedded default (examples/demo.yaml)".into(),
        }
    }

    /// Reads and validates the file. Named VIPs keep their addresses across
    /// reloads because the allocator lives as long as the source.
    pub fn load(&mut self) -> Result<DesiredState, ConfigError> {
        let cfg = match &self.path {
            Some(p) => config::load_config(p)?,
            None => config::parse_config(config::EMBEDDED_DEFAULT)?,
        };
        cfg.desired_state(&mut self.alloc)
    }

    /// Sends `()` (debounced) whenever the file may have changed. The returned
    /// watcher must be kept alive.
    pub fn watch(&self, tx: mpsc::Sender<()>) -> Result<Option<notify::RecommendedWatcher>> {
        let Some(path) = self.path.clone() else {
            return Ok(None);
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = path.file_name().map(|n| n.to_os_string());
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.try_send(());
            }
        })
        .context("starting the config file watcher")?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        Ok(Some(watcher))
    }
}

/// Time to let a burst of file events (truncate + write + close) settle.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
