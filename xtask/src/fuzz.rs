//! `cargo xtask fuzz`: a short run of every fuzz target (CI runs it), each
//! seeded with its committed corpus and regression inputs. A crash, a leak or
//! a failed invariant fails the task, naming the target and the input.
use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::util::{self, workspace_root};

/// cargo-fuzz, installed with rustup's stable cargo when missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run(seconds: u32, only: Option<String>) -> Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    ensure_tools()?;
    let listed =
        util::stdout(nightly_fuzz(&fuzz_dir).arg("list")).context("listing the fuzz targets")?;
    let targets: Vec<&str> = listed
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && only.as_deref().is_none_or(|o| o == *t))
        .collect();
    if targets.is_empty() {
        bail!("no fuzz target to run (asked for {only:?}; `cargo fuzz list` printed {listed:?})");
    }
    // One build for every target, so the timed runs below only fuzz.
    util::run(nightly_fuzz(&fuzz_dir).args(["build", "-O"]))?;
    let scratch = std::env::temp_dir().join(format!("l4lb-fuzz-{}", std::process::id()));
    let result = targets
        .iter()
        .try_for_each(|t| run_target(&fuzz_dir, &scratch, t, seconds));
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    println!(
        "fuzz: {} targets ran {seconds} s each, no failure",
        targets.len()
    );
    Ok(())
}

/// Fuzzes one target: libFuzzer writes new inputs to the first directory, a
/// scratch one, and reads the committed corpus and regressions after it, so
/// the committed corpus only changes when someone minimizes it on purpose.
fn run_target(fuzz_dir: &Path, scratch: &Path, target: &str, seconds: u32) -> Result<()> {
    let work = scratch.join(target);
    std::fs::create_dir_all(&work)?;
    let mut cmd = nightly_fuzz(fuzz_dir);
    cmd.args(["run", "-O", target]).arg(&work);
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir.join(kind).join(target);
        if dir.is_dir() {
            cmd.arg(dir);
        }
    }
    // A hang (20 s on one input) or 2 GB of memory is a failure too.
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-max_len=8192", "-timeout=20", "-rss_limit_mb=2048"]);
    util::run(&mut cmd).with_context(|| {
        format!("fuzz target {target} failed: its input is under fuzz/artifacts/{target}/")
    })
}

fn nightly_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir)
        .args(["+nightly", "fuzz"])
        // The outer `cargo xtask` sets these for rustup's stable toolchain.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}

/// A nightly toolchain (libFuzzer needs -Zsanitizer) and cargo-fuzz.
fn ensure_tools() -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!("fuzzing needs rustup's nightly toolchain (`rustup toolchain install nightly`)");
    }
    let have = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output();
    if have.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    util::run(
        Command::new("cargo")
            .args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ])
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .context("installing cargo-fuzz")
}
