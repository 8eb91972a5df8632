//! The VIP pre-filter (`L4LB_VIP_FILTER`, a bitmap with one bit per hash
//! slot) on the real kernel: two VIP addresses whose slots are the same
//! share one bit, which the agent clears only when the last of them goes.
//! The connect hooks skip every address whose bit is clear, so a bit
//! cleared too early would send the remaining VIP's connects nowhere.
use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use l4lb_common::{v4_mapped, vip_filter_slot};
use l4lb_tests::{Agent, Sandbox, require_root};
use serde_json::json;

const READY: Duration = Duration::from_secs(20);

/// Two addresses of 11.0.0.0/16 in the same filter slot.
fn colliding_pair() -> (Ipv4Addr, Ipv4Addr) {
    let mut seen = HashMap::new();
    for i in 1..u16::MAX as u32 {
        if matches!(i & 0xff, 0 | 255) {
            continue;
        }
        let ip = 0x0b00_0000 | i;
        let slot = vip_filter_slot(&v4_mapped(ip.to_be()));
        if let Some(first) = seen.insert(slot, ip) {
            return (Ipv4Addr::from(first), Ipv4Addr::from(ip));
        }
    }
    panic!("no two addresses of 11.0.0.0/16 share a filter slot");
}

fn vip_config(vips: &[Ipv4Addr]) -> String {
    let mut c = String::from("vips:\n");
    for v in vips {
        c.push_str(&format!(
            "  - vip: {v}:7000\n    backends: [127.0.0.2:7000]\n"
        ));
    }
    c
}

#[test]
fn a_bit_two_vip_addresses_share_stays_set_until_both_are_gone() {
    require_root();
    let (a, b) = colliding_pair();
    assert_eq!(
        vip_filter_slot(&v4_mapped(u32::from(a).to_be())),
        vip_filter_slot(&v4_mapped(u32::from(b).to_be()))
    );
    let mut sb = Sandbox::new("vipfilter").unwrap();
    sb.spawn_testsrv("s", &["127.0.0.2:7000"], &["127.0.0.2:7001"])
        .unwrap();
    let agent = Agent::start(&mut sb, &vip_config(&[a, b])).unwrap();
    agent.wait_vips(2, READY).unwrap();
    for vip in [a, b] {
        let v = sb.probe_tcp(&format!("{vip}:7000"), 20).unwrap();
        assert_eq!(v["counts"], json!({"s": 20}), "{vip}: {v}");
    }

    // The first address goes; the second still hashes to the shared bit.
    agent.rewrite_config(&vip_config(&[b])).unwrap();
    agent.wait_table("the first VIP's removal", READY, |v| {
        v.as_array().is_some_and(|rows| rows.len() == 1)
    });
    let v = sb.probe_tcp(&format!("{b}:7000"), 20).unwrap();
    assert_eq!(v["counts"], json!({"s": 20}), "{b}: {v}");
    let v = sb
        .probe(&[
            "tcp",
            "--to",
            &format!("{a}:7000"),
            "-n",
            "3",
            "--timeout-ms",
            "300",
        ])
        .unwrap();
    assert_eq!(v["errors"], 3, "the removed VIP {a} is balanced still: {v}");
}
