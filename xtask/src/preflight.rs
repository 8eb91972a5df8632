//! What every task that loads BPF checks first: root, toolchain, fresh binaries.
use anyhow::{Result, bail};

use crate::{setup, tasks, util};

/// Root + toolchain check, then builds the workspace. With `release`, points
/// the harness at target/release binaries (it looks next to xtask, i.e. in
/// target/debug, by default) unless the variable is already set (a wrapper
/// under valgrind --tool=massif, say).
pub fn kernel_task(release: bool) -> Result<()> {
    if !util::is_root() {
        bail!("this task needs root (network namespaces, cgroups, BPF)");
    }
    setup::require()?;
    tasks::build(release)?;
    if release {
        let dir = util::target_dir().join("release");
        for (var, bin) in [
            ("L4LB_AGENT_BIN", "l4lb-agent"),
            ("L4LB_TESTSRV_BIN", "l4lb-testsrv"),
            ("L4LB_PROBE_BIN", "l4lb-probe"),
        ] {
            if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
                continue;
            }
            // SAFETY: called before xtask starts any thread.
            unsafe { std::env::set_var(var, dir.join(bin)) };
        }
    }
    Ok(())
}
