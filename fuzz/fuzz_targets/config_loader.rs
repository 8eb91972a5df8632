//! Arbitrary text as the static VIP file into `config::parse_config`, then
//! `desired_state` with a fresh allocator (what `run --config` does on every
//! load). Checks, beyond "no panic":
//! - the state is Ok only if every VIP's backends are of its family, weights
//!   are 0..=100, ports 1..=65535, no VIP is unspecified, there are at most
//!   MAX_SERVICES VIPs, and named VIPs sit in dcos-net's named ranges;
//! - a second load with the same allocator gives the same state;
//! - the parsed entries written back as YAML (every string double-quoted
//!   with escapes) parse to the same entries.
#![no_main]

use std::fmt::Write;

use l4lb_common::{MAX_SERVICES, MAX_WEIGHT};
use l4lb_fuzz::{
    assert_service_sane,
    config::{StaticConfig, Target, parse_config},
    model::Proto,
    naming::VipAllocator,
};
use libfuzzer_sys::fuzz_target;

/// A YAML double-quoted scalar that reads back as `s` exactly.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => write!(out, "\\U{:08x}", c as u32).unwrap(),
        }
    }
    out.push('"');
    out
}

fn write_back(cfg: &StaticConfig) -> String {
    let mut y = String::from("vips:\n");
    for e in &cfg.entries {
        match &e.target {
            Target::Addr(a) => writeln!(y, "  - vip: {}", quote(&a.to_string())),
            Target::Named { label, .. } => writeln!(y, "  - name: {}", quote(label)),
        }
        .unwrap();
        let protos: Vec<&str> = e
            .protos
            .iter()
            .map(|p| match p {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            })
            .collect();
        writeln!(y, "    protocol: {}", quote(&protos.join(","))).unwrap();
        writeln!(y, "    backends:").unwrap();
        for (b, w) in &e.backends {
            writeln!(
                y,
                "      - {{addr: {}, weight: {w}}}",
                quote(&b.to_string())
            )
            .unwrap();
        }
        if e.backends.is_empty() {
            y.pop();
            y.push_str(" []\n");
        }
    }
    if cfg.entries.is_empty() {
        y = "vips: []\n".into();
    }
    y
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match parse_config(text) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let yaml = write_back(&cfg);
    match parse_config(&yaml) {
        Ok(back) => assert_eq!(back, cfg, "written back as:\n{yaml}"),
        Err(e) => panic!("written back as:\n{yaml}\ndoes not parse: {e}"),
    }

    let mut alloc = VipAllocator::new();
    let state = match cfg.desired_state(&mut alloc) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(state.services.len() <= MAX_SERVICES as usize);
    for (vip, spec) in &state.services {
        assert_service_sane(vip, spec, MAX_WEIGHT);
    }
    let again = cfg
        .desired_state(&mut alloc)
        .expect("loaded once, loads twice");
    assert_eq!(again, state, "second load differs");
});
