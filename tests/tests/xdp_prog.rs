//! Unit tests of the packet datapath (Katran style): the real XDP and tc
//! programs, loaded by the agent's datapath module with their maps pinned in a
//! sandbox pin root, run on packet fixtures through BPF_PROG_TEST_RUN. Nothing
//! is attached to any interface and no packet is sent anywhere.
//!
//! Checksums are verified independently: `valid_*` below recompute them from
//! scratch over the returned frame (RFC 1071), sharing no code with the
//! programs' incremental updates.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use l4lb_agent::{
    datapath::{self, Attached, Maps, xdp::RunOutput},
    model::{DesiredState, Proto, ServiceSpec, Vip},
    packet::{self, FrameOpts, Tuple},
    plan,
    reconcile::Reconciler,
};
use l4lb_tests::{Sandbox, require_root};

mod frames;
use frames::{embedded, fix_ip4, icmp_error, layout, sum16, valid_ip4};

/// (VIP, protocol, [(backend, weight)]), as a test writes a table.
type ServiceRow<'a> = (&'a str, Proto, &'a [(&'a str, u32)]);

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;

/// The datapath loaded into a sandbox (socket hooks on its child cgroup, maps
/// pinned under its pin root), with tables written by the agent's own
/// reconciler; `maps` is a second handle on the pinned maps for reading.
struct Lb {
    attached: Attached,
    rec: Reconciler<Maps>,
    maps: Maps,
    rt: tokio::runtime::Runtime,
    // Dropped last: removes the pins, the cgroup and the netns.
    _sb: Sandbox,
}

impl Lb {
    fn new(tag: &str) -> Lb {
        require_root();
        let sb = Sandbox::new(tag).unwrap();
        let loaded = datapath::load(sb.pin_root(), sb.cgroup(), plan::Capacity::default()).unwrap();
        let maps = Maps::open_pinned(sb.pin_root()).unwrap();
        // No grace needed: nothing runs concurrently with a test's writes.
        let rec = Reconciler::adopt(loaded.maps, Duration::ZERO).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        Lb {
            attached: loaded.attached,
            rec,
            maps,
            rt,
            _sb: sb,
        }
    }

    /// Replaces the whole table, as a source update would.
    fn set(&mut self, services: &[ServiceRow]) {
        let mut desired = DesiredState::default();
        for (vip, proto, backends) in services {
            let spec = ServiceSpec {
                name: None,
                framework: None,
                origin: None,
                backends: backends
                    .iter()
                    .map(|(a, w)| (a.parse().unwrap(), *w))
                    .collect(),
            };
            desired.services.insert(
                Vip {
                    addr: vip.parse().unwrap(),
                    proto: *proto,
                },
                spec,
            );
        }
        self.rt.block_on(self.rec.reconcile(&desired)).unwrap();
    }

    fn xdp(&self, frame: &[u8]) -> RunOutput {
        self.attached.test_xdp(frame, false, 1).unwrap()
    }

    fn tc(&self, frame: &[u8]) -> RunOutput {
        self.attached.test_tc(frame, 1).unwrap()
    }

    /// Where the XDP program sends a fresh packet of this flow.
    fn dst_of(&self, proto: Proto, src: &str, vip: &str) -> SocketAddr {
        let f = packet::frame(&tuple(proto, src, vip), &FrameOpts::default());
        let out = self.xdp(&f);
        assert_eq!(out.action, XDP_PASS);
        packet::parse(&out.frame).unwrap().dst
    }

    fn service_id(&self, vip: &str, proto: Proto) -> u32 {
        self.maps
            .service_value(&Vip {
                addr: vip.parse().unwrap(),
                proto,
            })
            .unwrap()
            .id
    }

    fn backend_id(&self, addr: &str) -> u32 {
        let addr: SocketAddr = addr.parse().unwrap();
        let applied = self.maps.read_applied().unwrap();
        *applied
            .backends
            .iter()
            .find(|(_, a)| **a == addr)
            .unwrap()
            .0
    }
}

fn as_ref(v: &[(String, u32)]) -> Vec<(&str, u32)> {
    v.iter().map(|(a, w)| (a.as_str(), *w)).collect()
}

fn tuple(proto: Proto, src: &str, dst: &str) -> Tuple {
    Tuple {
        proto,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
    }
}

// ---- independent checksum verification ----

/// TCP/UDP checksum verifies over pseudo-header + segment. A UDP-over-IPv4
/// checksum of 0 ("none") is reported as None.
fn valid_l4(f: &[u8]) -> Option<bool> {
    let (l3, l4, proto, v4) = layout(f);
    let seg = &f[l4..];
    let check_off = if proto == 6 { 16 } else { 6 };
    if proto == 17 && v4 && seg[check_off..check_off + 2] == [0, 0] {
        return None;
    }
    let mut ph = Vec::new();
    if v4 {
        ph.extend_from_slice(&f[l3 + 12..l3 + 20]);
        ph.extend_from_slice(&[0, proto]);
        ph.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    } else {
        ph.extend_from_slice(&f[l3 + 8..l3 + 40]);
        ph.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, proto]);
    }
    Some(sum16(&[&ph, seg]) == 0xffff)
}

/// Bytes that differ between two frames of the same length, as offsets.
fn diff(a: &[u8], b: &[u8]) -> BTreeSet<usize> {
    assert_eq!(a.len(), b.len(), "frame length changed");
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

// ---- forward path ----

#[test]
fn tcp_and_udp_over_ipv4_rewrite_destination_with_valid_checksums() {
    let mut lb = Lb::new("xdp-v4");
    let backends = [("198.18.2.2:8080", 1), ("198.18.2.3:8081", 1)];
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, &backends),
        ("11.0.0.1:53", Proto::Udp, &backends),
    ]);
    let allowed: BTreeSet<SocketAddr> = backends.iter().map(|(a, _)| a.parse().unwrap()).collect();
    let mut seen = BTreeSet::new();
    for (proto, vip) in [(Proto::Tcp, "11.0.0.1:80"), (Proto::Udp, "11.0.0.1:53")] {
        for port in 40000..40040 {
            let t = tuple(proto, &format!("198.18.1.2:{port}"), vip);
            let opts = FrameOpts {
                payload: vec![0xab; 3 + port as usize % 7],
                ..Default::default()
            };
            let input = packet::frame(&t, &opts);
            assert!(valid_ip4(&input) && valid_l4(&input) == Some(true));
            let out = lb.xdp(&input);
            assert_eq!(out.action, XDP_PASS, "{t:?}");
            let after = packet::parse(&out.frame).unwrap();
            assert!(allowed.contains(&after.dst), "{t:?} went to {}", after.dst);
            assert_eq!(after.src, t.src, "the source must not change");
            assert!(
                valid_ip4(&out.frame),
                "IPv4 header checksum broken for {t:?}"
            );
            assert_eq!(
                valid_l4(&out.frame),
                Some(true),
                "{proto} checksum broken for {t:?}"
            );
            // Only the destination address, port and the two checksums changed.
            let l4 = 34;
            let may: BTreeSet<usize> = [24, 25, 30, 31, 32, 33, l4 + 2, l4 + 3]
                .into_iter()
                .chain(match proto {
                    Proto::Tcp => [l4 + 16, l4 + 17],
                    Proto::Udp => [l4 + 6, l4 + 7],
                })
                .collect();
            let changed = diff(&input, &out.frame);
            assert!(changed.is_subset(&may), "{t:?}: bytes {changed:?} changed");
            seen.insert(after.dst);
        }
    }
    assert_eq!(seen, allowed, "40 flows per protocol all hit one backend");
}

#[test]
fn udp_over_ipv4_without_checksum_keeps_zero() {
    let mut lb = Lb::new("xdp-udp0");
    lb.set(&[("11.0.0.1:53", Proto::Udp, &[("198.18.2.2:5353", 1)])]);
    let t = tuple(Proto::Udp, "198.18.1.2:40000", "11.0.0.1:53");
    let input = packet::frame(
        &t,
        &FrameOpts {
            udp_no_checksum: true,
            ..Default::default()
        },
    );
    assert_eq!(valid_l4(&input), None);
    let out = lb.xdp(&input);
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(
        packet::parse(&out.frame).unwrap().dst,
        "198.18.2.2:5353".parse().unwrap()
    );
    assert!(valid_ip4(&out.frame));
    assert_eq!(
        valid_l4(&out.frame),
        None,
        "a zero UDP checksum must stay zero"
    );
}

#[test]
fn tcp_and_udp_over_ipv6_rewrite_destination_with_valid_checksums() {
    let mut lb = Lb::new("xdp-v6");
    let backends = [("[fd00:b1::2]:8080", 1), ("[fd00:b1::3]:8080", 1)];
    lb.set(&[
        ("[fd01:c::1]:80", Proto::Tcp, &backends),
        ("[fd01:c::1]:53", Proto::Udp, &backends),
    ]);
    let allowed: BTreeSet<SocketAddr> = backends.iter().map(|(a, _)| a.parse().unwrap()).collect();
    let mut seen = BTreeSet::new();
    for (proto, vip) in [
        (Proto::Tcp, "[fd01:c::1]:80"),
        (Proto::Udp, "[fd01:c::1]:53"),
    ] {
        for port in 40000..40030 {
            let t = tuple(proto, &format!("[fd00:c1::2]:{port}"), vip);
            let input = packet::frame(&t, &FrameOpts::default());
            assert_eq!(valid_l4(&input), Some(true));
            let out = lb.xdp(&input);
            assert_eq!(out.action, XDP_PASS);
            let after = packet::parse(&out.frame).unwrap();
            assert!(allowed.contains(&after.dst), "{t:?} went to {}", after.dst);
            assert_eq!(after.src, t.src);
            assert_eq!(
                valid_l4(&out.frame),
                Some(true),
                "{proto} checksum broken for {t:?}"
            );
            seen.insert(after.dst);
        }
    }
    assert_eq!(seen, allowed);
}

/// Fixtures the program must return byte for byte, with XDP_PASS, whatever
/// the table: they are not for a VIP address, or are for one but nothing the
/// parser rejects (another port or protocol of a VIP address, ARP, VLAN).
fn untouched_fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let vip_tcp = packet::frame(
        &tuple(Proto::Tcp, "198.18.1.2:40000", "11.0.0.1:80"),
        &FrameOpts::default(),
    );
    let mut out = vec![
        (
            "non-VIP address",
            packet::frame(
                &tuple(Proto::Tcp, "198.18.1.2:40000", "11.0.0.9:80"),
                &FrameOpts::default(),
            ),
        ),
        (
            "VIP address, other port",
            packet::frame(
                &tuple(Proto::Tcp, "198.18.1.2:40000", "11.0.0.1:81"),
                &FrameOpts::default(),
            ),
        ),
        (
            "VIP port, other protocol",
            packet::frame(
                &tuple(Proto::Udp, "198.18.1.2:40000", "11.0.0.1:80"),
                &FrameOpts::default(),
            ),
        ),
        (
            "non-VIP IPv6",
            packet::frame(
                &tuple(Proto::Udp, "[fd00:c1::2]:1", "[fd01:c::9]:80"),
                &FrameOpts::default(),
            ),
        ),
    ];
    // ARP and a VLAN-tagged frame.
    let mut arp = vip_tcp[..12].to_vec();
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    out.push(("ARP", arp));
    let mut vlan = vip_tcp[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&vip_tcp[12..]);
    out.push(("VLAN-tagged", vlan));
    out
}

/// Packets the program does not balance, to `v4`:80 or `[v6]`:80, with the
/// guard reason they are counted under when that is a VIP address.
fn unparsed_fixtures(v4: &str, v6: &str) -> Vec<(&'static str, usize, Vec<u8>)> {
    let (fragment, options, ext_header, other, truncated) = (0, 1, 2, 3, 4);
    let vip_tcp = packet::frame(
        &tuple(Proto::Tcp, "198.18.1.2:40000", &format!("{v4}:80")),
        &FrameOpts::default(),
    );
    let mut out = Vec::new();
    // ICMP echo request.
    let mut icmp = vip_tcp[..34].to_vec();
    icmp[14 + 9] = 1;
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    let icmp_len = (icmp.len() - 14) as u16;
    fix_ip4(&mut icmp, icmp_len);
    out.push(("ICMP", other, icmp));
    // First fragment (MF set) and a later fragment (offset != 0).
    let mut mf = vip_tcp.clone();
    mf[14 + 6] = 0x20;
    let len = (mf.len() - 14) as u16;
    fix_ip4(&mut mf, len);
    out.push(("first fragment (MF)", fragment, mf));
    let mut later = vip_tcp.clone();
    later[14 + 6] = 0x00;
    later[14 + 7] = 0x10;
    fix_ip4(&mut later, len);
    out.push(("later fragment (offset)", fragment, later));
    // IP options: IHL 6 with four NOPs.
    let mut opts = vip_tcp[..34].to_vec();
    opts.extend_from_slice(&[1, 1, 1, 1]);
    opts.extend_from_slice(&vip_tcp[34..]);
    opts[14] = 0x46;
    let len = (opts.len() - 14) as u16;
    fix_ip4(&mut opts, len);
    out.push(("IPv4 options (IHL 6)", options, opts));
    // Truncated TCP header.
    out.push(("truncated TCP header", truncated, vip_tcp[..40].to_vec()));
    // IPv6: a fragment header, a hop-by-hop header, ICMPv6, in front of TCP.
    let v6 = packet::frame(
        &tuple(Proto::Tcp, "[fd00:c1::2]:40000", &format!("[{v6}]:80")),
        &FrameOpts::default(),
    );
    for (what, next, reason) in [
        ("IPv6 fragment header", 44u8, fragment),
        ("IPv6 hop-by-hop header", 0, ext_header),
        ("ICMPv6", 58, other),
    ] {
        let mut f = v6[..54].to_vec();
        f[14 + 6] = next;
        f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&v6[54..]);
        let pl = (f.len() - 54) as u16;
        f[18..20].copy_from_slice(&pl.to_be_bytes());
        out.push((what, reason, f));
    }
    out
}

#[test]
fn non_vip_fragments_options_icmp_and_others_pass_untouched() {
    let mut lb = Lb::new("xdp-pass");
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, &[("198.18.2.2:8080", 1)]),
        ("[fd01:c::1]:80", Proto::Tcp, &[("[fd00:b1::2]:8080", 1)]),
    ]);
    let mut fixtures = untouched_fixtures();
    for (what, _, f) in unparsed_fixtures("11.0.0.9", "fd01:c::9") {
        fixtures.push((what, f));
    }
    for (what, f) in fixtures {
        let out = lb.xdp(&f);
        assert_eq!(out.action, XDP_PASS, "{what}");
        assert_eq!(out.frame, f, "{what} was modified");
    }
    // Nothing of that was counted as VIP traffic, nor dropped.
    let s = lb
        .maps
        .service_stats(lb.service_id("11.0.0.1:80", Proto::Tcp));
    assert_eq!((s.packets, s.flows), (0, 0), "{s:?}");
    assert!(lb.maps.vip_guard_drops().iter().all(|(_, n)| *n == 0));
}

/// XDP used to pass VIP packets it does not parse (fragments, IPv4
/// options, IPv6 extension headers, ICMP) to the kernel with the VIP still
/// their destination. They are dropped and counted per reason.
#[test]
fn unparsed_packets_to_a_vip_address_are_dropped_and_counted() {
    let mut lb = Lb::new("xdp-guard");
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, &[("198.18.2.2:8080", 1)]),
        ("[fd01:c::1]:80", Proto::Tcp, &[("[fd00:b1::2]:8080", 1)]),
    ]);
    let mut want = [0u64; 5];
    for (what, reason, f) in unparsed_fixtures("11.0.0.1", "fd01:c::1") {
        assert_eq!(lb.xdp(&f).action, XDP_DROP, "{what}");
        want[reason] += 1;
    }
    let got: Vec<u64> = lb.maps.vip_guard_drops().iter().map(|(_, n)| *n).collect();
    assert_eq!(got, want, "{:?}", lb.maps.vip_guard_drops());
    // Explained packets are judged the same and not counted.
    let (what, _, f) = &unparsed_fixtures("11.0.0.1", "fd01:c::1")[0];
    assert_eq!(
        lb.attached.test_xdp(f, true, 1).unwrap().action,
        XDP_DROP,
        "{what}"
    );
    let again: Vec<u64> = lb.maps.vip_guard_drops().iter().map(|(_, n)| *n).collect();
    assert_eq!(again, want);
}

/// A load rebuilds the VIP address map from the services map (a previous
/// agent stopped between the two writes, or predates the map).
#[test]
fn a_load_rebuilds_the_vip_address_map() {
    let mut lb = Lb::new("xdp-vipload");
    lb.set(&[("11.0.0.2:80", Proto::Tcp, &[("198.18.2.2:8080", 1)])]);
    let pinned = lb._sb.pin_root().join(l4lb_common::VIP_ADDRS_MAP);
    // ::ffff:11.0.0.2, as the map stores it.
    let key = "0 0 0 0 0 0 0 0 0 0 0xff 0xff 11 0 0 2";
    let mut del = std::process::Command::new("bpftool");
    del.args(["map", "delete", "pinned"])
        .arg(&pinned)
        .arg("key")
        .args(key.split(' '));
    l4lb_tests::run(&mut del).unwrap();
    assert!(lb.maps.vip_addrs().is_empty());
    let _again = datapath::load(
        lb._sb.pin_root(),
        lb._sb.cgroup(),
        plan::Capacity::default(),
    )
    .unwrap();
    assert_eq!(lb.maps.vip_addrs().len(), 1);
}

/// The VIP address map follows the table: an address stays while any
/// service is on it and goes with its last one.
#[test]
fn vip_address_map_follows_the_table() {
    let mut lb = Lb::new("xdp-vipaddrs");
    let be: &[(&str, u32)] = &[("198.18.2.2:8080", 1)];
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, be),
        ("11.0.0.1:81", Proto::Udp, be),
        ("11.0.0.2:80", Proto::Tcp, be),
    ]);
    let addrs = |lb: &Lb| -> BTreeMap<IpAddr, u32> {
        lb.maps
            .vip_addrs()
            .into_iter()
            .map(|(a, n)| (l4lb_agent::codec::ip(&a), n))
            .collect()
    };
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    assert_eq!(
        addrs(&lb),
        BTreeMap::from([(ip("11.0.0.1"), 2), (ip("11.0.0.2"), 1)])
    );
    let icmp_to = |dst: &str| unparsed_fixtures(dst, "fd01:c::1").remove(0).2;
    assert_eq!(lb.xdp(&icmp_to("11.0.0.2")).action, XDP_DROP);
    lb.set(&[("11.0.0.1:81", Proto::Udp, be)]);
    assert_eq!(addrs(&lb), BTreeMap::from([(ip("11.0.0.1"), 1)]));
    assert_eq!(lb.xdp(&icmp_to("11.0.0.2")).action, XDP_PASS);
    assert_eq!(lb.xdp(&icmp_to("11.0.0.1")).action, XDP_DROP);
    lb.set(&[]);
    assert!(addrs(&lb).is_empty());
}

// ---- backend choice, connection table, weights ----

#[test]
fn weight_zero_gets_no_new_flows_but_keeps_its_existing_ones() {
    let mut lb = Lb::new("xdp-w0");
    let (vip, a, b) = ("11.0.0.1:80", "198.18.2.2:8080", "198.18.2.3:8080");
    lb.set(&[(vip, Proto::Tcp, &[(a, 1), (b, 1)])]);
    // Open 100 flows; some land on b.
    let mut on_b = Vec::new();
    for port in 30000..30100 {
        let src = format!("198.18.1.2:{port}");
        if lb.dst_of(Proto::Tcp, &src, vip) == b.parse().unwrap() {
            on_b.push(src);
        }
    }
    assert!(
        !on_b.is_empty() && on_b.len() < 100,
        "{} of 100 flows on b",
        on_b.len()
    );
    // b drains (weight 0): its flows stay, new flows never reach it.
    lb.set(&[(vip, Proto::Tcp, &[(a, 1), (b, 0)])]);
    for src in &on_b {
        assert_eq!(
            lb.dst_of(Proto::Tcp, src, vip),
            b.parse().unwrap(),
            "tracked flow {src} left b"
        );
    }
    for port in 50000..50200 {
        let d = lb.dst_of(Proto::Tcp, &format!("198.18.1.9:{port}"), vip);
        assert_eq!(
            d,
            a.parse().unwrap(),
            "a new flow reached weight-0 backend b"
        );
    }
    // b removed: its flows are re-picked (to a), they do not black-hole.
    lb.set(&[(vip, Proto::Tcp, &[(a, 1)])]);
    for src in &on_b {
        assert_eq!(lb.dst_of(Proto::Tcp, src, vip), a.parse().unwrap());
    }
}

#[test]
fn existing_flows_keep_their_backend_through_an_addition() {
    let mut lb = Lb::new("xdp-add");
    let vip = "11.0.0.1:80";
    let three = [
        ("198.18.2.2:8080", 1),
        ("198.18.2.3:8080", 1),
        ("198.18.2.4:8080", 1),
    ];
    lb.set(&[(vip, Proto::Tcp, &three)]);
    let srcs: Vec<String> = (0..300)
        .map(|i| format!("198.18.1.{}:{}", 2 + i % 50, 20000 + i))
        .collect();
    let before: BTreeMap<&String, SocketAddr> = srcs
        .iter()
        .map(|s| (s, lb.dst_of(Proto::Tcp, s, vip)))
        .collect();
    let five = [
        three[0],
        three[1],
        three[2],
        ("198.18.2.5:8080", 1),
        ("198.18.2.6:8080", 1),
    ];
    lb.set(&[(vip, Proto::Tcp, &five)]);
    for s in &srcs {
        assert_eq!(
            lb.dst_of(Proto::Tcp, s, vip),
            before[s],
            "tracked flow {s} moved on an addition"
        );
    }
    // New flows use the new backends too.
    let new: BTreeSet<SocketAddr> = (0..300)
        .map(|i| {
            lb.dst_of(
                Proto::Tcp,
                &format!("198.18.3.{}:{}", 2 + i % 50, 20000 + i),
                vip,
            )
        })
        .collect();
    assert_eq!(new.len(), 5, "new flows reached only {new:?}");
}

/// A service removed and re-created with the same id, revision, slot range
/// and VIP, but without the backend a flow was on: the flow's entry from
/// before must not be taken as current (its generation is not the new
/// service's), so the flow is re-picked to a member.
#[test]
fn a_re_created_service_does_not_inherit_flows_of_the_old_one() {
    use l4lb_agent::{
        codec,
        plan::{Op, SlotTable},
    };
    use l4lb_common::{MemberKey, ServiceValue};
    let mut lb = Lb::new("xdp-recreate");
    let (vip, a, b) = ("11.0.0.1:80", "198.18.2.2:8080", "198.18.2.3:8080");
    lb.set(&[(vip, Proto::Udp, &[(a, 1), (b, 1)])]);
    let on_a = (30000..30100)
        .map(|port| format!("198.18.1.2:{port}"))
        .find(|src| lb.dst_of(Proto::Udp, src, vip) == a.parse().unwrap())
        .expect("a flow on a");
    let v = Vip {
        addr: vip.parse().unwrap(),
        proto: Proto::Udp,
    };
    let old = lb.maps.service_value(&v).unwrap();
    let (a_id, b_id) = (lb.backend_id(a), lb.backend_id(b));
    let key = codec::service_key(&v);
    let table = SlotTable::new(old.slot_count, vec![(b_id, b.parse().unwrap(), 1)]);
    // A handle opened now, as the next agent would.
    let mut maps = Maps::open_pinned(lb._sb.pin_root()).unwrap();
    maps.apply(&[
        Op::DelService(key),
        Op::DelMember(MemberKey {
            service_id: old.id,
            backend_id: a_id,
        }),
        Op::WriteSlots {
            base: old.slot_base,
            table,
        },
        Op::PutService(key, ServiceValue { backends: 1, ..old }),
    ])
    .unwrap();
    let new = lb.maps.service_value(&v).unwrap();
    assert_eq!(
        (new.id, new.revision, new.slot_base),
        (old.id, old.revision, old.slot_base)
    );
    assert_eq!(lb.dst_of(Proto::Udp, &on_a, vip), b.parse().unwrap());
}

#[test]
fn maglev_remaps_few_new_flows_when_one_backend_leaves() {
    // Property of the XDP pick itself (explain mode: no connection table),
    // measured on the live program: removing 1 of 5 moves about 1/5 of flows.
    let mut lb = Lb::new("xdp-maglev");
    let vip = "11.0.0.1:80";
    let five: Vec<(String, u32)> = (2..7).map(|i| (format!("198.18.2.{i}:8080"), 1)).collect();
    lb.set(&[(vip, Proto::Tcp, &as_ref(&five))]);
    let pick = |lb: &Lb, s: &str| {
        let f = packet::frame(&tuple(Proto::Tcp, s, vip), &FrameOpts::default());
        packet::parse(&lb.attached.test_xdp(&f, true, 1).unwrap().frame)
            .unwrap()
            .dst
    };
    let srcs: Vec<String> = (0..2000)
        .map(|i| format!("198.18.{}.{}:{}", 1 + i % 7, 2 + i % 200, 10000 + i))
        .collect();
    let before: Vec<SocketAddr> = srcs.iter().map(|s| pick(&lb, s)).collect();
    let gone: SocketAddr = five[4].0.parse().unwrap();
    lb.set(&[(vip, Proto::Tcp, &as_ref(&five[..4]))]);
    let after: Vec<SocketAddr> = srcs.iter().map(|s| pick(&lb, s)).collect();
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let had_gone = before.iter().filter(|b| **b == gone).count();
    // Flows of the removed backend must move; Maglev moves few others.
    assert!(moved >= had_gone);
    let frac = moved as f64 / srcs.len() as f64;
    assert!(
        frac <= 1.2 / 5.0 + 0.03,
        "removing 1 of 5 remapped {:.1}% of flows",
        frac * 100.0
    );
    // Explain mode wrote nothing: the connection table holds none of these.
    let s = lb.maps.service_stats(lb.service_id(vip, Proto::Tcp));
    assert_eq!(
        (s.packets, s.flows),
        (0, 0),
        "explain runs were counted: {s:?}"
    );
}

#[test]
fn vip_without_backend_drops_and_counts() {
    let mut lb = Lb::new("xdp-nobe");
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, &[("198.18.2.2:8080", 0)]),
        ("11.0.0.2:80", Proto::Tcp, &[]),
    ]);
    for vip in ["11.0.0.1:80", "11.0.0.2:80"] {
        let f = packet::frame(
            &tuple(Proto::Tcp, "198.18.1.2:40000", vip),
            &FrameOpts::default(),
        );
        assert_eq!(lb.xdp(&f).action, XDP_DROP, "{vip}");
        let s = lb.maps.service_stats(lb.service_id(vip, Proto::Tcp));
        assert_eq!(s.no_backend, 1, "{vip}: {s:?}");
    }
}

#[test]
fn per_vip_and_per_backend_packet_counters() {
    let mut lb = Lb::new("xdp-count");
    let (vip, a) = ("11.0.0.1:80", "198.18.2.2:8080");
    lb.set(&[(vip, Proto::Tcp, &[(a, 1)])]);
    let f = packet::frame(
        &tuple(Proto::Tcp, "198.18.1.2:40000", vip),
        &FrameOpts::default(),
    );
    for _ in 0..10 {
        assert_eq!(lb.xdp(&f).action, XDP_PASS);
    }
    let g = packet::frame(
        &tuple(Proto::Tcp, "198.18.1.3:40000", vip),
        &FrameOpts::default(),
    );
    assert_eq!(lb.xdp(&g).action, XDP_PASS);
    let s = lb.maps.service_stats(lb.service_id(vip, Proto::Tcp));
    assert_eq!(
        (s.packets, s.bytes, s.flows),
        (11, 11 * f.len() as u64, 2),
        "{s:?}"
    );
    let b = lb.maps.backend_stats(lb.backend_id(a));
    assert_eq!(
        (b.packets, b.bytes, b.flows),
        (11, 11 * f.len() as u64, 2),
        "{b:?}"
    );
    // The (VIP, backend) pair counts its flows (packets stay per backend).
    let pair = lb
        .maps
        .member_stats(lb.service_id(vip, Proto::Tcp), lb.backend_id(a))
        .unwrap();
    assert_eq!((pair.flows, pair.packets), (2, 0), "{pair:?}");
    // The pair's entry leaves with the member: none was there before the
    // flows, and the pair reads zero again once the backend is removed.
    let (svc, be) = (lb.service_id(vip, Proto::Tcp), lb.backend_id(a));
    lb.set(&[(vip, Proto::Tcp, &[("198.18.2.3:8080", 1)])]);
    assert_eq!(lb.maps.member_stats(svc, be).unwrap().flows, 0);
}

// ---- reply path (tc) ----

#[test]
fn tc_rewrites_replies_to_come_from_the_vip() {
    let mut lb = Lb::new("tc-revnat");
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, &[("198.18.2.2:8080", 1)]),
        ("11.0.0.1:53", Proto::Udp, &[("198.18.2.2:5353", 1)]),
        ("[fd01:c::1]:80", Proto::Tcp, &[("[fd00:b1::2]:8080", 1)]),
        ("[fd01:c::1]:53", Proto::Udp, &[("[fd00:b1::2]:5353", 1)]),
    ]);
    let cases = [
        (Proto::Tcp, "198.18.1.2:40000", "11.0.0.1:80", false),
        (Proto::Udp, "198.18.1.2:40000", "11.0.0.1:53", false),
        (Proto::Udp, "198.18.1.2:40001", "11.0.0.1:53", true),
        (Proto::Tcp, "[fd00:c1::2]:40000", "[fd01:c::1]:80", false),
        (Proto::Udp, "[fd00:c1::2]:40000", "[fd01:c::1]:53", false),
    ];
    for (proto, client, vip, no_csum) in cases {
        // The request goes through XDP, which records the reverse NAT entry.
        let req = packet::frame(&tuple(proto, client, vip), &FrameOpts::default());
        let backend = packet::parse(&lb.xdp(&req).frame).unwrap().dst;
        // The backend's reply, as it leaves the node towards the client.
        let opts = FrameOpts {
            payload: b"reply!".to_vec(),
            tcp_flags: 0x12,
            udp_no_checksum: no_csum,
        };
        let reply = packet::frame(
            &Tuple {
                proto,
                src: backend,
                dst: client.parse().unwrap(),
            },
            &opts,
        );
        let out = lb.tc(&reply);
        assert_eq!(out.action, TC_ACT_OK);
        let after = packet::parse(&out.frame).unwrap();
        assert_eq!(
            after.src,
            vip.parse().unwrap(),
            "{proto} reply from {backend} not shown as the VIP"
        );
        assert_eq!(after.dst, client.parse().unwrap());
        if backend.is_ipv4() {
            assert!(
                valid_ip4(&out.frame),
                "{proto} {client}: IPv4 header checksum"
            );
        }
        let expect = if no_csum { None } else { Some(true) };
        assert_eq!(
            valid_l4(&out.frame),
            expect,
            "{proto} {client}: L4 checksum"
        );
        // A packet from the backend to a client port XDP never saw is left alone.
        let other: SocketAddr = match client.parse::<SocketAddr>().unwrap() {
            SocketAddr::V4(c) => SocketAddr::new(IpAddr::V4(*c.ip()), 1),
            SocketAddr::V6(c) => SocketAddr::new(IpAddr::V6(*c.ip()), 1),
        };
        let stray = packet::frame(
            &Tuple {
                proto,
                src: backend,
                dst: other,
            },
            &opts,
        );
        assert_eq!(lb.tc(&stray).frame, stray, "unrelated reply modified");
    }
    let s = lb
        .maps
        .service_stats(lb.service_id("11.0.0.1:53", Proto::Udp));
    assert_eq!(s.reply_packets, 2, "{s:?}");
}

#[test]
fn per_packet_cost_is_reported() {
    // Smoke test of the benchmark path: repeat > 1 returns a per-run time.
    let mut lb = Lb::new("xdp-cost");
    lb.set(&[("11.0.0.1:80", Proto::Tcp, &[("198.18.2.2:8080", 1)])]);
    let f = packet::frame(
        &tuple(Proto::Tcp, "198.18.1.2:40000", "11.0.0.1:80"),
        &FrameOpts::default(),
    );
    let out = lb.attached.test_xdp(&f, false, 1000).unwrap();
    assert_eq!(out.action, XDP_PASS);
    assert!(
        out.per_run > Duration::ZERO && out.per_run < Duration::from_micros(100),
        "{:?}",
        out.per_run
    );
}

// ---- ICMP errors about VIP flows ----

#[test]
fn icmp_errors_about_vip_flows_are_translated_both_ways() {
    let mut lb = Lb::new("xdp-icmp");
    lb.set(&[
        ("11.0.0.1:80", Proto::Tcp, &[("198.18.2.2:8080", 1)]),
        ("[fd01:c::1]:80", Proto::Tcp, &[("[fd00:b1::2]:8080", 1)]),
    ]);
    let cases = [
        (
            "198.18.1.2:40000",
            "11.0.0.1:80",
            "198.18.1.9",
            "198.18.2.1",
        ),
        (
            "[fd00:c1::2]:40000",
            "[fd01:c::1]:80",
            "fd00:c1::9",
            "fd00:b1::1",
        ),
    ];
    for (client, vip, near_router, far_router) in cases {
        let (client, vip): (SocketAddr, SocketAddr) =
            (client.parse().unwrap(), vip.parse().unwrap());
        let req = packet::frame(
            &tuple(Proto::Tcp, &client.to_string(), &vip.to_string()),
            &FrameOpts::default(),
        );
        let backend = packet::parse(&lb.xdp(&req).frame).unwrap().dst;
        // A router on the backend side: too big, about client -> backend.
        let about_req = Tuple {
            proto: Proto::Tcp,
            src: client,
            dst: backend,
        };
        let err = icmp_error(far_router.parse().unwrap(), client.ip(), &about_req);
        let out = lb.tc(&err);
        assert_eq!(out.action, TC_ACT_OK);
        let (src, dst, ok) = embedded(&out.frame);
        assert_eq!(
            (src, dst),
            (client, vip),
            "{vip}: the client sees its VIP flow"
        );
        assert!(ok, "{vip}: checksums after the tc rewrite");
        assert_eq!(packet::parse(&out.frame), None, "outer stays ICMP");
        // A router on the client side: too big, about the reply VIP -> client.
        let about_reply = Tuple {
            proto: Proto::Tcp,
            src: vip,
            dst: client,
        };
        let err = icmp_error(near_router.parse().unwrap(), vip.ip(), &about_reply);
        let out = lb.xdp(&err);
        assert_eq!(out.action, XDP_PASS, "{vip}");
        let (src, dst, ok) = embedded(&out.frame);
        assert_eq!(
            (src, dst),
            (backend, client),
            "{vip}: the backend sees its own flow"
        );
        assert!(ok, "{vip}: checksums after the XDP rewrite");
        let outer_dst = if vip.is_ipv4() {
            &out.frame[30..34]
        } else {
            &out.frame[38..54]
        };
        let want = match backend.ip() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        assert_eq!(
            outer_dst,
            &want[..],
            "{vip}: outer destination is the backend"
        );
        if vip.is_ipv4() {
            assert!(valid_ip4(&out.frame), "outer IPv4 checksum");
        }
        // About a flow the node does not track: dropped, not routed with the VIP in it.
        let stranger = Tuple {
            proto: Proto::Tcp,
            src: vip,
            dst: SocketAddr::new(client.ip(), 1),
        };
        let err = icmp_error(near_router.parse().unwrap(), vip.ip(), &stranger);
        assert_eq!(lb.xdp(&err).action, XDP_DROP, "{vip}: unknown flow");
    }
}

/// Nine IPv4 clients of one VIP whose connection-table keys all start at
/// the same slot (`l4lb_common::flow_slot` under the pin root's seed): 8
/// fill the range, the 9th takes the slot of the least recently seen one.
fn colliding_clients(seed: u64, vip: &str, n: usize) -> Vec<String> {
    let vip: SocketAddr = vip.parse().unwrap();
    let IpAddr::V4(dst) = vip.ip() else { panic!() };
    let key = |src: u32, port: u16| {
        l4lb_common::FlowKey4::words(
            src.to_be(),
            u32::from(dst).to_be(),
            port.to_be(),
            vip.port().to_be(),
            6,
        )
    };
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    let target = l4lb_common::flow_slot(&key(base, 40000), seed);
    let mut found = Vec::new();
    // 198.18.0.0/15 (2^17 hosts) x 64 ports: ~32 keys start at each slot.
    'search: for host in 0..1u32 << 17 {
        for port in 40000..40064u16 {
            if l4lb_common::flow_slot(&key(base + host, port), seed) == target {
                found.push(format!("{}:{port}", std::net::Ipv4Addr::from(base + host)));
                if found.len() == n {
                    break 'search;
                }
            }
        }
    }
    assert_eq!(found.len(), n, "clients sharing slot {target}");
    found
}

#[test]
fn a_full_slot_range_gives_up_its_least_recently_seen_flow_and_counts_it() {
    let mut lb = Lb::new("xdp-ct4");
    let (vip, a, b) = ("11.0.0.1:80", "198.18.2.2:8080", "198.18.2.3:8080");
    lb.set(&[(vip, Proto::Tcp, &[(a, 1), (b, 1)])]);
    let seed = l4lb_agent::datapath::ct_seed::read(lb._sb.pin_root()).unwrap();
    let clients = colliding_clients(seed, vip, l4lb_common::FLOW_PROBE_SLOTS as usize + 1);
    let (first, rest) = clients.split_first().unwrap();
    let (last, range) = rest.split_last().unwrap();
    let picked: Vec<SocketAddr> = clients[..clients.len() - 1]
        .iter()
        .map(|c| lb.dst_of(Proto::Tcp, c, vip))
        .collect();
    // The others seen again, a tick of the clock later: `first` is the
    // least recently seen of the full range.
    std::thread::sleep(Duration::from_millis(50));
    for c in range {
        lb.dst_of(Proto::Tcp, c, vip);
    }
    let tracked = |c: &str| {
        let t = tuple(Proto::Tcp, c, vip);
        datapath::xdp::explain(lb._sb.pin_root(), &t, 1, false)
            .unwrap()
            .tracked
    };
    assert!(clients[..clients.len() - 1].iter().all(|c| tracked(c)));
    assert_eq!(lb.maps.conntrack_losses(), [("evicted", 0), ("no_slot", 0)]);
    lb.dst_of(Proto::Tcp, last, vip);
    assert_eq!(lb.maps.conntrack_losses(), [("evicted", 1), ("no_slot", 0)]);
    assert!(!tracked(first), "{first} kept its slot");
    assert!(tracked(last) && range.iter().all(|c| tracked(c)));
    // The forgotten flow is re-picked by Maglev: the same backend.
    assert_eq!(lb.dst_of(Proto::Tcp, first, vip), picked[0]);
}

#[test]
fn the_slot_hash_seed_lives_as_long_as_its_pin_root() {
    use l4lb_agent::datapath::ct_seed;
    let lb = Lb::new("xdp-seed");
    let root = lb._sb.pin_root();
    let seed = ct_seed::read(root).unwrap();
    // What every later load of this pin root (a restart) gets.
    assert_eq!(ct_seed::read_or_create(root).unwrap(), seed);
    let other = Lb::new("xdp-seed-other");
    assert_ne!(ct_seed::read(other._sb.pin_root()).unwrap(), seed);
    // A pinned connection table without its seed is refused, not re-seeded:
    // its flows would no longer be found.
    std::fs::remove_file(root.join(l4lb_common::CT_SEED_MAP)).unwrap();
    let err = ct_seed::read_or_create(root).unwrap_err().to_string();
    assert!(err.contains("without its slot-hash seed"), "{err}");
}
