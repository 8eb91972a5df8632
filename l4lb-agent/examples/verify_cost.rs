//! Verifier cost of each program in a BPF object: load time and the
//! kernel's `verified_insns`. Loads only (no attach, no pin): maps are
//! created for the run and go with the process.
//! `cargo run --example verify_cost -- path/to/l4lb.bpf.o [--locality-off]`
//! (`--locality-off`: loaded as the agent does under `--locality off`).
use std::time::Instant;

use anyhow::{Context, Result};
use aya::{EbpfLoader, programs::Program};

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: verify_cost OBJECT")?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let mut loader = EbpfLoader::new();
    let step: u8 = 0;
    if std::env::args().any(|a| a == "--locality-off") {
        loader.override_global("L4LB_LOCALITY_STEP", &step, true);
    }
    let mut ebpf = loader.load(&bytes).context("loading the object")?;
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    let mut total_ms = 0.0;
    for name in names {
        let prog = ebpf.program_mut(&name).context("program")?;
        let t = Instant::now();
        let info = load(prog).with_context(|| format!("loading {name}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        total_ms += ms;
        println!("{name:24} {ms:8.1} ms  verified_insns {info}");
    }
    println!("total {total_ms:.1} ms");
    Ok(())
}

/// Loads one program; returns its verified instruction count (0: a type
/// the object does not use, not loaded).
fn load(prog: &mut Program) -> Result<u32> {
    // `load` is per type (others take arguments); `info` is common to all.
    match prog {
        Program::CgroupSockAddr(p) => p.load()?,
        Program::SockOps(p) => p.load()?,
        Program::CgroupSock(p) => p.load()?,
        Program::Xdp(p) => p.load()?,
        Program::SchedClassifier(p) => p.load()?,
        _ => return Ok(0),
    }
    Ok(prog.info()?.verified_instruction_count().unwrap_or(0))
}
