//! `cargo deny` over every dependency of the workspace (the rules are
//! `deny.toml`): licenses, banned crates and sources always, which need
//! nothing from the network; RustSec advisories when the advisory database
//! can be fetched, and a clear `skipped` line when it cannot (a machine that
//! reaches crates.io but not the database's git host still lints the rest).
use std::{process::Command, time::Duration};

use anyhow::{Result, bail};

use crate::{toolchain::CARGO_DENY, util};

/// A fetch that has not finished by then is not going to.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

fn deny() -> Command {
    let mut cmd = Command::new(CARGO_DENY);
    cmd.arg("deny").current_dir(util::workspace_root());
    cmd
}

fn run_checks(checks: &[&str], offline: bool) -> Result<()> {
    let mut cmd = deny();
    cmd.args(["--log-level", "error"]);
    if offline {
        cmd.arg("--offline");
    }
    cmd.arg("check").args(checks);
    eprintln!("+ {cmd:?}");
    let status = cmd.status()?;
    if !status.success() {
        bail!(
            "`cargo deny check {}` failed ({status}): a dependency breaks a rule of deny.toml \
             (its report is above); fix the dependency or, with a reason, the rule",
            checks.join(" ")
        );
    }
    Ok(())
}

/// Fetches the advisory database, bounded in time; `Err` says why not.
fn fetch_advisories() -> Result<(), String> {
    let out = util::output_timeout(deny().args(["fetch", "db"]), FETCH_TIMEOUT)
        .map_err(|e| format!("{e:#}"))?;
    if out.status.success() {
        return Ok(());
    }
    // The last line is the reason (git's "could not resolve host", …).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(
            || out.status.to_string(),
            |l| l.trim().chars().take(200).collect(),
        );
    Err(why)
}

pub fn check() -> Result<()> {
    run_checks(&["bans", "licenses", "sources"], false)?;
    match fetch_advisories() {
        Ok(()) => run_checks(&["advisories"], true),
        Err(why) => {
            println!(
                "cargo deny advisories: skipped: the RustSec advisory database could not be \
                 fetched ({why}); licenses, bans and sources were checked"
            );
            Ok(())
        }
    }
}
