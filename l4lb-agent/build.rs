//! Builds the kernel programs (`l4lb-ebpf`) with Debian's rustc-web, which ships
//! a prebuilt `core` for bpfel-unknown-none (rustup here cannot build-std), and
//! bpf-linker from `cargo xtask setup`. Both objects it builds are embedded in
//! the agent: `l4lb.bpf.o` (the datapath) and `l4lb-bench.bpf.o` (the
//! benchmark's `pktgen`/`pktsink` programs).
use std::{env, path::PathBuf, process::Command};

const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const TOOLS_BIN: &str = "/opt/l4lb-tools/bin";

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest.join("../l4lb-ebpf").canonicalize()?;
    let common_dir = manifest.join("../l4lb-common").canonicalize()?;
    for dir in [ebpf_dir.join("src"), common_dir.join("src")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join(".cargo/config.toml").display()
    );

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let linker = PathBuf::from(TOOLS_BIN).join("bpf-linker");
    let missing: Vec<String> = [DEBIAN_CARGO, DEBIAN_RUSTC]
        .iter()
        .map(PathBuf::from)
        .chain([linker])
        .filter(|tool| !tool.exists())
        .map(|tool| tool.display().to_string())
        .collect();
    if !missing.is_empty() {
        return placeholder_objects(&out_dir, &missing);
    }

    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(&ebpf_dir)
        .args(["build", "--release", "--target-dir"])
        .arg(&target_dir);
    // The parent build's toolchain settings must not leak into the eBPF build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTUP_TOOLCHAIN"
            || key == "RUSTDOC"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    if let Ok(home) = env::var("CARGO_HOME") {
        cmd.env("CARGO_HOME", home);
    }
    let path = format!("{TOOLS_BIN}:{}", env::var("PATH").unwrap_or_default());
    cmd.env("RUSTC", DEBIAN_RUSTC).env("PATH", path);
    let status = cmd.status()?;
    if !status.success() {
        anyhow::bail!("building l4lb-ebpf failed ({status})");
    }
    // Two objects: the datapath (`l4lb`, loaded by `run`) and the benchmark's
    // traffic source and sink (`l4lb-bench`, loaded only by `pktgen`/`pktsink`).
    for (bin, obj) in [("l4lb", "l4lb.bpf.o"), ("l4lb-bench", "l4lb-bench.bpf.o")] {
        let built = target_dir.join("bpfel-unknown-none/release").join(bin);
        std::fs::copy(&built, out_dir.join(obj))
            .map_err(|e| anyhow::anyhow!("copying {}: {e}", built.display()))?;
    }
    Ok(())
}

/// Without the eBPF toolchain (a fresh machine, before `cargo xtask setup`)
/// the agent is built with empty objects, so that `cargo xtask setup` itself,
/// which links the agent, can build and install the toolchain. The agent
/// refuses to load an empty object with an error that says what to run
/// (`datapath::built_object`). A path that never exists makes cargo rerun
/// this script on every build until the toolchain is there: a file's
/// appearance alone would not (Debian installs it with an old mtime).
fn placeholder_objects(out_dir: &std::path::Path, missing: &[String]) -> anyhow::Result<()> {
    println!(
        "cargo:warning=eBPF toolchain missing ({}): l4lb-agent is built WITHOUT its kernel \
         programs; run `cargo xtask setup` (as root), then build again",
        missing.join(", ")
    );
    println!(
        "cargo:rerun-if-changed={}",
        out_dir
            .join("rerun-until-the-ebpf-toolchain-exists")
            .display()
    );
    for obj in ["l4lb.bpf.o", "l4lb-bench.bpf.o"] {
        std::fs::write(out_dir.join(obj), [])?;
    }
    Ok(())
}
