//! The kernel's own accounting of BPF program run time (`run_time_ns`,
//! `run_cnt`), switched on with `BPF_ENABLE_STATS` for as long as the
//! returned descriptor is open: scoped to the benchmark, unlike the
//! `kernel.bpf_stats_enabled` sysctl, and nothing to restore afterwards.
use std::{
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util;

/// `BPF_ENABLE_STATS` and `BPF_STATS_RUN_TIME` (linux/bpf.h).
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// Run-time stats on while this lives.
pub struct StatsOn(#[allow(dead_code)] OwnedFd);

/// Hand-written: the one `bpf()` command aya does not wrap; its attribute is
/// a single `u32` (the `enable_stats.type` member of `union bpf_attr`).
pub fn enable() -> Result<StatsOn> {
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&BPF_STATS_RUN_TIME.to_ne_bytes());
    // SAFETY: `attr` outlives the call and is as long as the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_ENABLE_STATS,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned, owned by no one else.
    Ok(StatsOn(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// One attached program's accounting.
#[derive(Clone, Debug)]
pub struct ProgCost {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgCost {
    pub fn ns_per_run(&self) -> f64 {
        self.run_time_ns as f64 / self.runs.max(1) as f64
    }
}

fn bpftool_json(args: &[&str], path: Option<&Path>) -> Result<Value> {
    let mut cmd = Command::new("bpftool");
    cmd.arg("-j").args(args);
    if let Some(p) = path {
        cmd.arg(p);
    }
    let out = util::stdout(&mut cmd)?;
    serde_json::from_str(&out).with_context(|| format!("bpftool {args:?} printed {out:?}"))
}

/// The programs behind the links pinned under `<pin_root>/links`.
pub fn pinned_program_costs(pin_root: &Path) -> Result<Vec<ProgCost>> {
    let dir = pin_root.join("links");
    let mut costs = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let link = bpftool_json(&["link", "show", "pinned"], Some(&entry?.path()))?;
        let Some(id) = link["prog_id"].as_u64() else {
            continue;
        };
        let prog = bpftool_json(&["prog", "show", "id", &id.to_string()], None)?;
        costs.push(ProgCost {
            name: prog["name"].as_str().unwrap_or("?").to_owned(),
            runs: prog["run_cnt"].as_u64().unwrap_or(0),
            run_time_ns: prog["run_time_ns"].as_u64().unwrap_or(0),
        });
    }
    costs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(costs)
}

/// What each program ran between two readings (same programs, same order).
pub fn delta(before: &[ProgCost], after: &[ProgCost]) -> Vec<ProgCost> {
    combine(before, after, |b, a| a - b)
}

/// Two accountings added program by program (`acc` may be empty: the first).
pub fn sum(acc: &[ProgCost], more: &[ProgCost]) -> Vec<ProgCost> {
    combine(acc, more, |a, m| a + m)
}

/// `other`'s programs, each count `f(base's, other's)` (0 for base's when it
/// lacks the program).
fn combine(base: &[ProgCost], other: &[ProgCost], f: fn(u64, u64) -> u64) -> Vec<ProgCost> {
    other
        .iter()
        .map(|o| {
            let b = base.iter().find(|b| b.name == o.name);
            ProgCost {
                name: o.name.clone(),
                runs: f(b.map_or(0, |b| b.runs), o.runs),
                run_time_ns: f(b.map_or(0, |b| b.run_time_ns), o.run_time_ns),
            }
        })
        .collect()
}

/// `name N ns x R runs` for the programs that ran, and their total per
/// `per` calls.
pub fn describe(costs: &[ProgCost], per: u64) -> String {
    let ran: Vec<String> = costs
        .iter()
        .filter(|c| c.runs > 0)
        .map(|c| format!("{} {:.0} ns x {}", c.name, c.ns_per_run(), c.runs))
        .collect();
    let total: u64 = costs.iter().map(|c| c.run_time_ns).sum();
    format!(
        "{} = {:.0} ns per connect()",
        ran.join(" + "),
        total as f64 / per.max(1) as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(name: &str, runs: u64, run_time_ns: u64) -> ProgCost {
        ProgCost {
            name: name.into(),
            runs,
            run_time_ns,
        }
    }

    fn counts(c: &[ProgCost]) -> Vec<(&str, u64, u64)> {
        c.iter()
            .map(|c| (c.name.as_str(), c.runs, c.run_time_ns))
            .collect()
    }

    #[test]
    fn chunks_add_up_to_what_one_reading_would_show() {
        let start = [cost("a", 10, 1_000), cost("b", 0, 0)];
        let mid = [cost("a", 15, 1_600), cost("b", 4, 400)];
        let end = [cost("a", 25, 2_100), cost("b", 6, 1_000)];
        let first = delta(&start, &mid);
        assert_eq!(counts(&first), [("a", 5, 600), ("b", 4, 400)]);
        let both = sum(&sum(&[], &first), &delta(&mid, &end));
        assert_eq!(counts(&both), counts(&delta(&start, &end)));
        assert_eq!(
            describe(&both, 10),
            "a 73 ns x 15 + b 167 ns x 6 = 210 ns per connect()"
        );
    }
}
