//! The static VIP file: read at start, re-read on SIGHUP and whenever the file
//! changes. The watch is on its directory and any change there leads to a
//! read, applied only if the text differs: editors replace the file by rename,
//! and a Kubernetes ConfigMap update swaps a `..data` symlink beside it without
//! an event that names the file. A file that fails to parse changes nothing.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use super::SourceEvent;
use crate::{
    config::{self, ConfigError},
    model::{Catalog, DesiredState},
    naming::VipAllocator,
};

pub struct StaticSource {
    /// None = the embedded default (examples/demo.yaml).
    path: Option<PathBuf>,
    alloc: VipAllocator,
    /// The text last read, good or bad: a change event that leaves it
    /// unchanged reads nothing new.
    last_text: Option<String>,
}

impl StaticSource {
    pub fn new(path: Option<PathBuf>) -> Self {
        StaticSource {
            path,
            alloc: VipAllocator::default(),
            last_text: None,
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
        match self.path.clone() {
            Some(p) => {
                let text = super::config_file::read_config_text(&p)?;
                self.load_text(&p, text)
            }
            None => config::parse_config(config::EMBEDDED_DEFAULT)?.desired_state(&mut self.alloc),
        }
    }

    /// [`StaticSource::load`] if the file's text changed since the last
    /// read; None if it did not (or there is no file).
    pub fn load_if_changed(&mut self) -> Option<Result<DesiredState, ConfigError>> {
        let path = self.path.clone()?;
        let text = match super::config_file::read_config_text(&path) {
            Ok(text) => text,
            Err(e) => return Some(Err(e)),
        };
        if self.last_text.as_ref() == Some(&text) {
            return None;
        }
        Some(self.load_text(&path, text))
    }

    fn load_text(&mut self, path: &Path, text: String) -> Result<DesiredState, ConfigError> {
        let cfg = config::parse_file_text(path, &text);
        self.last_text = Some(text);
        cfg?.desired_state(&mut self.alloc)
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
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
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

/// Sends the first table, then re-reads the file on SIGHUP and on change;
/// returns the file watcher, which must stay alive.
pub async fn spawn(
    mut source: StaticSource,
    first: DesiredState,
    tx: mpsc::Sender<SourceEvent>,
) -> Result<Option<notify::RecommendedWatcher>> {
    let initial = SourceEvent::Update {
        catalog: Catalog {
            services: first,
            ..Default::default()
        },
        services: None,
        trigger: "initial".into(),
        received_at: None,
        skipped: 0,
    };
    tx.send(initial).await?;
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    let watcher = source.watch(changed_tx)?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let trigger = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                Some(()) = changed.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while changed.try_recv().is_ok() {}
                    "file change"
                }
                else => return,
            };
            let loaded = match trigger {
                "SIGHUP" => source.load(),
                _ => match source.load_if_changed() {
                    Some(loaded) => loaded,
                    None => continue, // something else in the directory changed
                },
            };
            let ev = match loaded {
                Ok(services) => SourceEvent::Update {
                    catalog: Catalog {
                        services,
                        ..Default::default()
                    },
                    services: None,
                    trigger: trigger.into(),
                    received_at: None,
                    skipped: 0,
                },
                Err(e) => SourceEvent::Failed {
                    trigger: trigger.into(),
                    reason: e.to_string(),
                },
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::symlink};

    use super::*;

    const ONE: &str = "vips:\n  - vip: 198.18.0.1:80\n    backends: [\"198.19.0.1:80\"]\n";
    const TWO: &str = "vips:\n  - vip: 198.18.0.2:80\n    backends: [\"198.19.0.1:80\"]\n";

    /// Lays out a directory as the kubelet mounts a ConfigMap:
    /// `vips.yaml -> ..data/vips.yaml`, `..data -> ..<version>`.
    fn configmap_version(dir: &Path, version: &str, text: &str) {
        let v = dir.join(format!("..{version}"));
        fs::create_dir(&v).unwrap();
        fs::write(v.join("vips.yaml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(format!("..{version}"), &tmp).unwrap();
        fs::rename(&tmp, dir.join("..data")).unwrap(); // the atomic swap
    }

    fn first_vip(state: &DesiredState) -> String {
        state.services.keys().next().unwrap().addr.to_string()
    }

    #[tokio::test]
    async fn a_configmap_symlink_swap_is_seen_and_read() {
        let dir = tempfile::tempdir().unwrap();
        configmap_version(dir.path(), "v1", ONE);
        symlink("..data/vips.yaml", dir.path().join("vips.yaml")).unwrap();
        let mut source = StaticSource::new(Some(dir.path().join("vips.yaml")));
        assert_eq!(first_vip(&source.load().unwrap()), "198.18.0.1:80");
        let (tx, mut rx) = mpsc::channel(1);
        let _watcher = source.watch(tx).unwrap();

        configmap_version(dir.path(), "v2", TWO);
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no change event")
            .unwrap();
        let reloaded = source.load_if_changed().expect("the text changed").unwrap();
        assert_eq!(first_vip(&reloaded), "198.18.0.2:80");
        assert!(
            source.load_if_changed().is_none(),
            "same text again: nothing to apply"
        );
    }

    #[tokio::test]
    async fn another_file_in_the_directory_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vips.yaml");
        fs::write(&path, ONE).unwrap();
        let mut source = StaticSource::new(Some(path));
        source.load().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let _watcher = source.watch(tx).unwrap();
        fs::write(dir.path().join("other"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no event")
            .unwrap();
        assert!(source.load_if_changed().is_none());
    }

    #[test]
    fn an_endless_or_special_file_is_refused() {
        let mut source = StaticSource::new(Some("/dev/zero".into()));
        let err = source.load().unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = StaticSource::new(Some(fifo))
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
