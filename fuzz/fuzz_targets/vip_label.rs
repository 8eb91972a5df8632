//! Arbitrary text into dcos-net's naming: `normalize_label`, `vip_key`,
//! `vip_fqdn` and `parse_vip_label`. The input is `label` or
//! `label\nframework` (framework `marathon` when absent). Checks:
//! - a normalized label is 1..=63 characters of [a-z0-9-], neither starts
//!   nor ends with '-', and normalizing it again changes nothing;
//! - a VIP name's FQDN is `<label>.<framework>.l4lb.thisdcos.directory`, a
//!   valid DNS name whose labels all pass the same rule;
//! - a parsed VIP label has a port in 1..=65535, and writing it back
//!   (`name:port`, `ip:port`, `[v6]:port`) parses to the same value;
//! - a named VIP's first-choice address is in dcos-net's ranges.
#![no_main]

use std::net::IpAddr;

use hickory_proto::rr::Name;
use l4lb_fuzz::naming::{
    self, Family, L4LB_ZONE, VipAllocator, VipName, normalize_label, parse_vip_label, vip_fqdn,
    vip_key,
};
use libfuzzer_sys::fuzz_target;

fn check_label(l: &str) {
    assert!((1..=63).contains(&l.len()), "{l:?}: length {}", l.len());
    assert!(
        l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{l:?}: bad character"
    );
    assert!(!l.starts_with('-') && !l.ends_with('-'), "{l:?}: edge '-'");
}

fn alloc() -> &'static VipAllocator {
    static A: std::sync::OnceLock<VipAllocator> = std::sync::OnceLock::new();
    A.get_or_init(VipAllocator::new)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (label, framework) = text.split_once('\n').unwrap_or((&text, "marathon"));

    for s in [label, framework] {
        if let Some(n) = normalize_label(s) {
            check_label(&n);
            assert_eq!(
                normalize_label(&n).as_deref(),
                Some(n.as_str()),
                "not idempotent"
            );
        }
    }
    match (vip_key(label, framework), vip_fqdn(label, framework)) {
        (Some(key), Some(fqdn)) => {
            assert_eq!(fqdn, format!("{key}.{L4LB_ZONE}"));
            let mut parts = key.split('.');
            let (l, f) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(parts.next().is_none(), "{key:?}");
            check_label(l);
            check_label(f);
            let name = Name::from_ascii(&fqdn).expect("a valid DNS name");
            assert_eq!(name.num_labels(), 5, "{fqdn}");
            for fam in [Family::V4, Family::V6] {
                let ip = alloc().hashed_address(fam, &key);
                assert!(
                    match ip {
                        IpAddr::V4(v) => v.octets()[0] == 11,
                        IpAddr::V6(v) => v.segments()[..4] == [0xfd01, 0xc, 0, 0],
                    },
                    "{key}: {ip}"
                );
            }
        }
        (None, None) => {
            assert!(normalize_label(label).is_none() || normalize_label(framework).is_none())
        }
        other => panic!("vip_key and vip_fqdn disagree: {other:?}"),
    }

    let Ok(v) = parse_vip_label(label) else {
        return;
    };
    assert_ne!(v.port, 0);
    let written = match &v.name {
        VipName::Named(n) => {
            assert!(normalize_label(n).is_some(), "{n:?} has no DNS name");
            assert!(!n.contains([':', '[', ']']), "{n:?}");
            assert!(naming::vip_fqdn(n, "marathon").is_some());
            format!("{n}:{}", v.port)
        }
        VipName::Ip(IpAddr::V4(ip)) => format!("{ip}:{}", v.port),
        VipName::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", v.port),
    };
    assert_eq!(
        parse_vip_label(&written).as_ref(),
        Ok(&v),
        "{label:?} → {written:?}"
    );
});
