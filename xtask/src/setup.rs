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

/// A cargo-installed tool pinned to one version under [`TOOLS_ROOT`].
struct PinnedTool {
    krate: &'static str,
    bin: &'static str,
    version: &'static str,
    /// `cargo install` arguments after the crate and version.
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// What to pass for `--version` (cargo subcommands want their name first).
    version_args: &'static [&'static str],
}

const TOOLS: [PinnedTool; 2] = [
    PinnedTool {
        krate: "bpf-linker",
        bin: BPF_LINKER,
        version: BPF_LINKER_VERSION,
        args: &["--no-default-features", "--features", BPF_LINKER_FEATURE],
        env: &[("LLVM_PREFIX", LLVM_PREFIX)],
        version_args: &["--version"],
    },
    PinnedTool {
        krate: "cargo-deny",
        bin: CARGO_DENY,
        version: CARGO_DENY_VERSION,
        args: &[],
        env: &[],
        version_args: &["deny", "--version"],
    },
];

impl PinnedTool {
    /// The version the installed binary reports, if it runs.
    fn reported(&self) -> Option<String> {
        let out = Command::new(self.bin)
            .args(self.version_args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn ok(&self) -> bool {
        self.reported()
            .is_some_and(|v| v.split_whitespace().any(|w| w == self.version))
    }

    fn missing(&self) -> String {
        match self.reported() {
            Some(v) => format!("{} reports `{v}`, need {}", self.bin, self.version),
            None => format!("{} {} not installed", self.bin, self.version),
        }
    }

    fn install(&self) -> Result<()> {
        println!(
            "{}: building {} into {TOOLS_ROOT} (a few minutes)",
            self.krate, self.version
        );
        let mut cmd = util::cargo();
        cmd.current_dir("/")
            .args(["install", self.krate, "--version", self.version, "--locked"])
            .args(self.args)
            .args(["--force", "--root", TOOLS_ROOT])
            .envs(self.env.iter().copied());
        run(&mut cmd)?;
        if !self.ok() {
            bail!("{} installed but {}", self.krate, self.missing());
        }
        Ok(())
    }
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
    missing.extend(TOOLS.iter().filter(|t| !t.ok()).map(PinnedTool::missing));
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

    for tool in &TOOLS {
        if tool.ok() {
            println!("{}: {} already installed", tool.krate, tool.version);
        } else {
            root_needed(&format!("installing {} into {TOOLS_ROOT}", tool.krate))?;
            tool.install()?;
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
