//! `build` and `test`: thin wrappers around cargo so README and CI share one command.
use anyhow::{Result, bail};

use crate::{deny, setup, util};

pub fn build(release: bool) -> Result<()> {
    let mut cmd = util::cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)
}

/// What CI enforces before any test runs: formatting (the workspace and the
/// eBPF crate, which is not a member), clippy with warnings as errors, and
/// `cargo deny` over the dependencies.
/// The first failure ends the run with the command that fixes or shows it.
fn lint() -> Result<()> {
    let checks: [(&[&str], &str); 3] = [
        (
            &["fmt", "--all", "--check"],
            "code is not formatted: run `cargo fmt --all` and commit the result",
        ),
        (
            &["fmt", "--manifest-path", "l4lb-ebpf/Cargo.toml", "--check"],
            "the eBPF crate is not formatted: run `cargo fmt --manifest-path l4lb-ebpf/Cargo.toml` and commit the result",
        ),
        (
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            "clippy found problems (warnings are errors): fix what it printed above; \
             `cargo clippy --workspace --all-targets -- -D warnings` shows them again",
        ),
    ];
    for (args, fix) in checks {
        let mut cmd = util::cargo();
        cmd.args(args);
        eprintln!("+ {cmd:?}");
        let status = cmd.status()?;
        if !status.success() {
            eprintln!("\nerror: {fix}\n");
            bail!("`cargo {}` failed ({status}): {fix}", args.join(" "));
        }
    }
    deny::check()
}

pub fn test(extra: &[String]) -> Result<()> {
    setup::require()?;
    if !util::is_root() {
        eprintln!("warning: not root: the kernel tests need root and will fail");
    }
    // Lint first: clippy builds the workspace (the agent's build.rs builds
    // the eBPF objects), so a broken build fails here too.
    lint()?;
    build(false)?;
    // --no-fail-fast: CI shows every failing test binary, not just the first.
    // --lib --bins --tests: no doc-test runs (there are none) ending the log on "0 passed".
    let mut cmd = util::cargo();
    if let Some(file) = test_file(extra) {
        // `-- socket_lb`: the tests of tests/tests/socket_lb.rs, which a
        // name filter would not select (their names do not contain the file's).
        cmd.args(["test", "-p", "l4lb-tests", "--no-fail-fast", "--test", file])
            .args(["--", "--test-threads=2"])
            .args(&extra[1..]);
    } else {
        cmd.args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--lib",
            "--bins",
            "--tests",
            "--",
            "--test-threads=2",
        ])
        .args(extra);
    }
    cmd.stdout(std::process::Stdio::piped());
    eprintln!("+ {cmd:?}");
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result_line(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    // One closing line over all test binaries.
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() || failed > 0 {
        anyhow::bail!("tests failed ({status})");
    }
    if passed == 0 {
        anyhow::bail!("no test ran");
    }
    Ok(())
}

/// The first extra argument when it names a kernel test file
/// (`tests/tests/<name>.rs`) rather than a test-name filter.
fn test_file(extra: &[String]) -> Option<&str> {
    let first = extra.first()?;
    let plain = !first.is_empty() && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let path = util::workspace_root().join(format!("tests/tests/{first}.rs"));
    (plain && path.is_file()).then_some(first.as_str())
}

/// `test result: ok. 9 passed; 0 failed; …` → (9, 0).
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let num = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word)?
                .trim()
                .parse()
                .ok()
        })
    };
    Some((num("passed")?, num("failed")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_file_name_selects_that_file() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::test_file(&args(&["socket_lb"])), Some("socket_lb"));
        assert_eq!(
            super::test_file(&args(&["stale_udp", "--nocapture"])),
            Some("stale_udp")
        );
        assert_eq!(super::test_file(&args(&["xdp"])), None, "a name filter");
        assert_eq!(super::test_file(&args(&["../Cargo"])), None);
        assert_eq!(super::test_file(&[]), None);
    }

    #[test]
    fn parses_result_lines() {
        let l = "test result: ok. 53 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.04s";
        assert_eq!(super::parse_result_line(l), Some((53, 0)));
        let l = "test result: FAILED. 8 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 4.02s";
        assert_eq!(super::parse_result_line(l), Some((8, 1)));
        assert_eq!(super::parse_result_line("running 3 tests"), None);
    }
}
