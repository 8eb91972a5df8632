//! Where the project's binaries are, from a test, from xtask or from CI.
use std::{env, path::PathBuf};

/// `l4lb-agent` (env `L4LB_AGENT_BIN` overrides).
pub fn agent_bin() -> PathBuf {
    find_bin("L4LB_AGENT_BIN", "l4lb-agent")
}

/// `l4lb-testsrv` (env `L4LB_TESTSRV_BIN` overrides).
pub fn testsrv_bin() -> PathBuf {
    find_bin("L4LB_TESTSRV_BIN", "l4lb-testsrv")
}

/// `l4lb-probe` (env `L4LB_PROBE_BIN` overrides).
pub fn probe_bin() -> PathBuf {
    find_bin("L4LB_PROBE_BIN", "l4lb-probe")
}

/// `l4lb-fake-dns` (env `L4LB_FAKE_DNS_BIN` overrides).
pub fn fake_dns_bin() -> PathBuf {
    find_bin("L4LB_FAKE_DNS_BIN", "l4lb-fake-dns")
}

/// `l4lb-fake-marathon` (env `L4LB_FAKE_MARATHON_BIN` overrides).
pub fn fake_marathon_bin() -> PathBuf {
    find_bin("L4LB_FAKE_MARATHON_BIN", "l4lb-fake-marathon")
}

/// `l4lb-fake-mesos` (env `L4LB_FAKE_MESOS_BIN` overrides).
pub fn fake_mesos_bin() -> PathBuf {
    find_bin("L4LB_FAKE_MESOS_BIN", "l4lb-fake-mesos")
}

/// Env override, else next to the running executable, else in its parent dir
/// (test binaries live in target/<profile>/deps, the bins in target/<profile>).
/// When nothing exists the first candidate is returned so the caller's error
/// names a meaningful path.
fn find_bin(var: &str, name: &str) -> PathBuf {
    if let Some(p) = env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let Some(dir) = env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    else {
        return PathBuf::from(name);
    };
    let mut candidates = vec![dir.join(name)];
    if let Some(parent) = dir.parent() {
        candidates.push(parent.join(name));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or(&candidates[0])
        .clone()
}
