//! `cargo xtask setup`: install the eBPF toolchain and runtime tools (idempotent),
//! and `check`, which `test` uses to fail early with a pointer to `setup`.
use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::{
    toolchain::*,
    util::{self, is_root, run},
};

/// Packages from [`APT_PACKAGES`] that dpkg does not report as installed.
fn missing_packages() -> Vec<&'static str> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(APT_PACKAGES)
        .output();
    // dpkg-query exits 1 when a package is unknown but still lists the others.
    let listed = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !listed.lines().any(|l| {
                let mut it = l.split_whitespace();
                it.next() == Some(*p) && it.next() == Some("ii")
            })
        })
        .collect()
}

/// The version bpf-linker reports, if it runs.
fn bpf_linker_version() -> Option<String> {
    let out = Command::new(BPF_LINKER).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn bpf_linker_ok() -> bool {
    bpf_linker_version().is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == BPFFS && f[2] == "bpf"
        })
    })
}

/// An existing mount is left as it is; say how to tighten it.
fn warn_if_world_writable() {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(BPFFS)
        && m.mode() & 0o022 != 0
    {
        println!(
            "bpffs: {BPFFS} is writable by others (mode {:o}): any user can create a pin root there; \
             `mount -o remount,mode=0700 {BPFFS}` tightens it",
            m.mode() & 0o7777
        );
    }
}

/// What is missing for builds and kernel tests; empty when ready.
pub fn check() -> Vec<String> {
    let mut missing = Vec::new();
    let pkgs = missing_packages();
    if !pkgs.is_empty() {
        missing.push(format!("Debian packages not installed: {}", pkgs.join(" ")));
    }
    for bin in [DEBIAN_CARGO, DEBIAN_RUSTC] {
        if !Path::new(bin).exists() {
            missing.push(format!("{bin} (from cargo-web/rustc-web) not found"));
        }
    }
    if !bpf_linker_ok() {
        missing.push(match bpf_linker_version() {
            Some(v) => format!("{BPF_LINKER} reports `{v}`, need {BPF_LINKER_VERSION}"),
            None => format!("{BPF_LINKER} {BPF_LINKER_VERSION} not installed"),
        });
    }
    if !bpffs_mounted() {
        missing.push(format!("bpffs not mounted at {BPFFS}"));
    }
    missing
}

/// Fails with a pointer to `cargo xtask setup` if anything is missing.
pub fn require() -> Result<()> {
    let missing = check();
    if missing.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("the eBPF toolchain is not ready:\n");
    for m in &missing {
        msg.push_str(&format!("  - {m}\n"));
    }
    msg.push_str("run `cargo xtask setup` as root first (see README, \"Toolchain\")");
    bail!(msg)
}

pub fn run_setup() -> Result<()> {
    let root_needed = |what: &str| -> Result<()> {
        if is_root() {
            Ok(())
        } else {
            bail!("{what} needs root: run `cargo xtask setup` as root")
        }
    };

    let pkgs = missing_packages();
    if pkgs.is_empty() {
        println!("apt: all {} packages already installed", APT_PACKAGES.len());
    } else {
        root_needed("installing Debian packages")?;
        println!("apt: installing {}", pkgs.join(" "));
        // A fresh machine has empty package lists: apt finds nothing before an update.
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .args(["install", "-y"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        let still = missing_packages();
        if !still.is_empty() {
            bail!(
                "apt-get install finished but these are still missing: {}",
                still.join(" ")
            );
        }
    }

    if bpf_linker_ok() {
        println!("bpf-linker: {BPF_LINKER} {BPF_LINKER_VERSION} already installed");
    } else {
        root_needed("installing bpf-linker into /opt")?;
        println!("bpf-linker: building {BPF_LINKER_VERSION} into {TOOLS_ROOT} (about a minute)");
        run(util::cargo()
            .current_dir("/")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args([
                "--no-default-features",
                "--features",
                BPF_LINKER_FEATURE,
                "--force",
            ])
            .args(["--root", TOOLS_ROOT])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
        if !bpf_linker_ok() {
            bail!(
                "bpf-linker installed but `{BPF_LINKER} --version` does not report {BPF_LINKER_VERSION}"
            );
        }
    }

    if bpffs_mounted() {
        println!("bpffs: already mounted at {BPFFS}");
        warn_if_world_writable();
    } else {
        root_needed("mounting bpffs")?;
        // 0700: by default bpffs is 1777, and any user could pre-create
        // the agent's pin root (which the agent then refuses).
        run(Command::new("mount").args(["-t", "bpf", "-o", "mode=0700", "bpf", BPFFS]))?;
        println!("bpffs: mounted at {BPFFS} (mode 0700)");
    }

    let missing = check();
    if !missing.is_empty() {
        bail!("setup finished but still missing: {}", missing.join("; "));
    }
    println!("setup: toolchain ready");
    Ok(())
}
