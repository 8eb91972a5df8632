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
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.name == a.name);
            ProgCost {
                name: a.name.clone(),
                runs: a.runs - b.map_or(0, |b| b.runs),
                run_time_ns: a.run_time_ns - b.map_or(0, |b| b.run_time_ns),
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
