//! `l4lb-agent verify` (hidden): the adoption check run on demand, for
//! operators and the crash tests. Reads the pins only; prints every problem.
use std::{os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    adopt::Problem,
    datapath::{self, LINKS_DIR, links},
};

#[derive(Debug, Serialize)]
pub struct Report {
    /// The layout version recorded with the maps (None: no record).
    pub abi_version: Option<u32>,
    pub services: usize,
    pub hooks: Vec<links::HookState>,
    pub problems: Vec<Problem>,
}

/// Checks the layout record, every service's table and every hook's link
/// (attached to `cgroup`, when given). A running apply may show a passing
/// mismatch (a new table written, its switch not yet): check an idle agent.
pub fn verify(pin_root: &Path, cgroup: Option<&Path>) -> Result<Report> {
    let mut problems = Vec::new();
    let abi_version = match datapath::abi::read(pin_root) {
        Ok(Some(v)) if v == l4lb_common::ABI_VERSION => Some(v),
        Ok(v) => {
            let want = l4lb_common::ABI_VERSION;
            problems.push(general(format!(
                "layout record {v:?}, this agent writes version {want}"
            )));
            v
        }
        Err(e) => {
            problems.push(general(format!("{e:#}")));
            None
        }
    };
    let maps = datapath::Maps::open_pinned(pin_root)?;
    let (applied, table_problems) = maps.read_checked()?;
    problems.extend(table_problems);
    let hooks = links::hook_states(&pin_root.join(LINKS_DIR));
    let want = match cgroup {
        Some(c) => Some(
            std::fs::metadata(c)
                .with_context(|| format!("stat {}", c.display()))?
                .ino(),
        ),
        None => None,
    };
    for h in &hooks {
        match (h.cgroup_id, want) {
            (None, _) => problems.push(general(format!("{}: no link pinned", h.program))),
            (Some(0), _) => problems.push(general(format!("{}: its cgroup is gone", h.program))),
            (Some(id), Some(w)) if id != w => problems.push(general(format!(
                "{}: attached to cgroup {id}, not {w}",
                h.program
            ))),
            _ => {}
        }
    }
    Ok(Report {
        abi_version,
        services: applied.services.len(),
        hooks,
        problems,
    })
}

fn general(problem: String) -> Problem {
    Problem {
        vip: None,
        service_id: None,
        problem,
    }
}
