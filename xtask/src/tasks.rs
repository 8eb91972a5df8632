//! `build` and `test`: thin wrappers around cargo so README and CI share one command.
use anyhow::Result;

use crate::{setup, util};

pub fn build(release: bool) -> Result<()> {
    let mut cmd = util::cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)
}

pub fn test(extra: &[String]) -> Result<()> {
    setup::require()?;
    if !util::is_root() {
        eprintln!("warning: not root: the kernel tests need root and will fail");
    }
    build(false)?;
    // --no-fail-fast: CI shows every failing test binary, not just the first.
    util::run(
        util::cargo()
            .args([
                "test",
                "--workspace",
                "--no-fail-fast",
                "--",
                "--test-threads=2",
            ])
            .args(extra),
    )
}
