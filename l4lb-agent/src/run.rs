//! `l4lb-agent run`: load, adopt, reconcile, then follow the source until told to stop.
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

use crate::{
    cli::RunArgs,
    datapath,
    reconcile::Reconciler,
    source::static_file::{DEBOUNCE, StaticSource},
};

pub async fn run(args: RunArgs) -> Result<()> {
    let mut source = StaticSource::new(args.config.clone());
    // Validate before touching the kernel: a bad file never loads anything.
    let desired = source
        .load()
        .with_context(|| format!("invalid VIP file {}", source.describe()))?;

    let cgroup = match &args.cgroup {
        Some(c) => c.clone(),
        None => datapath::cgroup2_root()?,
    };
    let datapath::Loaded {
        maps,
        attached: _attached,
        logger,
    } = datapath::load(&args.pin_root, &cgroup)?;
    info!(cgroup = %cgroup.display(), pin_root = %args.pin_root.display(), "socket hooks attached");
    if let Some(logger) = logger {
        spawn_kernel_log(logger)?;
    }

    let mut rec = Reconciler::adopt(maps, Duration::from_millis(args.grace_ms))?;
    if !rec.applied().services.is_empty() {
        info!(
            services = rec.applied().services.len(),
            "adopted the table already in the pinned maps"
        );
    }
    apply(&mut rec, &desired, "initial").await;

    let (tx, mut rx) = mpsc::channel::<()>(1);
    let _watcher = source.watch(tx.clone())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            Some(()) = rx.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                "file change"
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        match source.load() {
            Ok(desired) => apply(&mut rec, &desired, why).await,
            Err(e) => error!(trigger = why, "keeping the previous table: {e}"),
        }
    }
    info!(
        "stopping: the datapath keeps serving from {} (pinned links and maps); `l4lb-agent teardown` removes it",
        args.pin_root.display()
    );
    Ok(())
}

async fn apply<W: crate::reconcile::MapWriter>(
    rec: &mut Reconciler<W>,
    desired: &crate::model::DesiredState,
    why: &str,
) {
    match rec.reconcile(desired).await {
        Ok(o) => info!(
            trigger = why,
            added = o.summary.added,
            changed = o.summary.changed,
            removed = o.summary.removed,
            unchanged = o.summary.unchanged,
            writes = o.writes,
            took_us = o.took.as_micros() as u64,
            "table applied"
        ),
        Err(e) => error!(trigger = why, "{e:#}"),
    }
}

/// Forwards aya-log records from the kernel programs to our log (at their level, debug mostly).
fn spawn_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) -> Result<()> {
    // SAFETY: the logger owns its ring buffer map fd for as long as it lives,
    // and the AsyncFd owns the logger.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the kernel log reader: {e}"))?;
    tokio::spawn(async move {
        loop {
            match fd.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(e) => {
                    warn!("kernel log reader stopped: {e}");
                    return;
                }
            }
        }
    });
    Ok(())
}
