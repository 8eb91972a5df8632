//! Arbitrary text into dcos-net's naming: `normalize_label`, `domain_frag`,
//! `vip_key`, `vip_fqdn` and `parse_vip_label`. The input is `label` or
//! `label\nframework` (framework `marathon` when absent). Checks:
//! - a normalized label is 1..=63 characters of [a-z0-9-], neither starts
//!   nor ends with '-', and normalizing it again changes nothing;
//! - a domain fragment is dot-joined labels that each pass that rule, and
//!   fragmenting it again changes nothing;
//! - a VIP name's FQDN is `<frag(label)>.<frag(framework)>.l4lb.thisdcos.directory`,
//!   a valid DNS name of at most 253 characters whose labels all pass the rule;
//! - a parsed VIP label has a port in 1..=65535, and writing it back
//!   (`name:port`, `ip:port`, `[v6]:port`) parses to the same value;
//! - a named VIP's first-choice address is in dcos-net's ranges.
#![no_main]

use std::net::IpAddr;

use hickory_proto::rr::Name;
use l4lb_fuzz::naming::{
    self, Family, L4LB_ZONE, MAX_FQDN_LEN, VipAllocator, VipName, domain_frag, normalize_label,
    parse_vip_label, vip_fqdn, vip_key,
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
    for s in [label, framework] {
        if let Some(f) = domain_frag(s) {
            f.split('.').for_each(check_label);
            assert_eq!(
                domain_frag(&f).as_deref(),
                Some(f.as_str()),
                "not idempotent"
            );
        }
    }
    match (vip_key(label, framework), vip_fqdn(label, framework)) {
        (Some(key), Some(fqdn)) => {
            assert_eq!(fqdn, format!("{key}.{L4LB_ZONE}"));
            let (l, f) = (domain_frag(label).unwrap(), domain_frag(framework).unwrap());
            assert_eq!(key, format!("{l}.{f}"));
            key.split('.').for_each(check_label);
            assert!(fqdn.len() <= MAX_FQDN_LEN, "{fqdn}");
            let name = Name::from_ascii(&fqdn).expect("a valid DNS name");
            assert_eq!(
                name.num_labels() as usize,
                key.split('.').count() + 3,
                "{fqdn}"
            );
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
            let fits = |l: &str, f: &str| l.len() + f.len() + 2 + L4LB_ZONE.len() <= MAX_FQDN_LEN;
            if let (Some(l), Some(f)) = (domain_frag(label), domain_frag(framework)) {
                assert!(!fits(&l, &f), "{l}.{f} fits but has no key");
            }
        }
        other => panic!("vip_key and vip_fqdn disagree: {other:?}"),
    }

    let Ok(v) = parse_vip_label(label) else {
        return;
    };
    assert_ne!(v.port, 0);
    let written = match &v.name {
        VipName::Named(n) => {
            assert!(domain_frag(n).is_some(), "{n:?} has no DNS name");
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
