use std::net::SocketAddr;

use hickory_proto::rr::RData;

use super::*;
use crate::mesos::cluster::{parse_host_port, parse_pid};
use crate::model::Endpoint;

/// The records of `c` in a zone `domain`, as `name A|AAAA ip` and
/// `name SRV target:port`, sorted.
fn records(domain: &str, c: &Cluster) -> Vec<String> {
    let mut z = ZoneBuilder::new(domain);
    add_cluster(&mut z, c);
    let mut out: Vec<String> = z
        .into_records()
        .into_iter()
        .map(|(name, data)| match data {
            RData::A(a) => format!("{name} A {}", a.0),
            RData::AAAA(a) => format!("{name} AAAA {}", a.0),
            RData::SRV(s) => format!("{name} SRV {}:{}", s.target(), s.port()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    out.sort();
    out
}

/// Mesos-DNS's inputs: the leader as `name@ip:port`, masters as `ip:port`.
fn masters_only(leader: &str, masters: &[&str]) -> Cluster {
    let socket = |hp: crate::mesos::HostPort| {
        let crate::hosts::AgentAt::Ip(ip) = hp.host else {
            panic!("an address")
        };
        SocketAddr::new(ip, hp.port.unwrap())
    };
    Cluster {
        leader: parse_pid(leader).map(socket),
        masters: masters
            .iter()
            .map(|m| socket(parse_host_port(m).unwrap()))
            .collect(),
        ..Cluster::default()
    }
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

const LEADER_SRV: [&str; 2] = [
    "_leader._tcp.foo.com. SRV leader.foo.com.:7",
    "_leader._udp.foo.com. SRV leader.foo.com.:7",
];

/// Mesos-DNS's `TestMasterRecord` (records/generator_test.go), case by case:
/// the same domain, masters and leader, exactly the same records.
#[test]
fn master_records_as_mesos_dns_test_master_record() {
    fn srv(v: &[&'static str]) -> Vec<&'static str> {
        [v, &LEADER_SRV[..]].concat()
    }
    let cases: Vec<(&[&str], &str, Vec<&str>)> = vec![
        (&[], "", vec![]),
        (&[], "@", vec![]),
        (&[], "1@", vec![]),
        (&[], "@2", vec![]),
        (&[], "3@4", vec![]),
        (
            &[],
            "5@0.0.0.6:7",
            srv(&[
                "leader.foo.com. A 0.0.0.6",
                "master.foo.com. A 0.0.0.6",
                "master0.foo.com. A 0.0.0.6",
            ]),
        ),
        (
            &[],
            "5@[2001:db8::1]:7",
            srv(&[
                "leader.foo.com. AAAA 2001:db8::1",
                "master.foo.com. AAAA 2001:db8::1",
                "master0.foo.com. AAAA 2001:db8::1",
            ]),
        ),
        // single master: leader and fallback
        (
            &["0.0.0.6:7"],
            "5@0.0.0.6:7",
            srv(&[
                "leader.foo.com. A 0.0.0.6",
                "master.foo.com. A 0.0.0.6",
                "master0.foo.com. A 0.0.0.6",
            ]),
        ),
    ];
    // leader not in the list; duplicates; the leader listed (at the end,
    // twice): all the same records.
    let leader_second = srv(&[
        "leader.foo.com. A 0.0.0.6",
        "master.foo.com. A 0.0.0.6",
        "master.foo.com. A 0.0.0.8",
        "master1.foo.com. A 0.0.0.6",
        "master0.foo.com. A 0.0.0.8",
    ]);
    let mut cases = cases;
    for masters in [
        &["0.0.0.8:9"][..],
        &["0.0.0.8:9", "0.0.0.8:9"],
        &["0.0.0.8:9", "0.0.0.6:7"],
        &["0.0.0.8:9", "0.0.0.6:7", "0.0.0.6:7"],
    ] {
        cases.push((masters, "5@0.0.0.6:7", leader_second.clone()));
    }
    // the leader in the middle of the list; an IPv6 master.
    cases.push((
        &["0.0.0.8:9", "0.0.0.6:7", "0.0.0.7:0"],
        "5@0.0.0.6:7",
        srv(&[
            "leader.foo.com. A 0.0.0.6",
            "master.foo.com. A 0.0.0.6",
            "master.foo.com. A 0.0.0.8",
            "master.foo.com. A 0.0.0.7",
            "master0.foo.com. A 0.0.0.8",
            "master1.foo.com. A 0.0.0.6",
            "master2.foo.com. A 0.0.0.7",
        ]),
    ));
    cases.push((
        &["0.0.0.8:9", "0.0.0.6:7", "[2001:db8::1]:0"],
        "5@0.0.0.6:7",
        srv(&[
            "leader.foo.com. A 0.0.0.6",
            "master.foo.com. A 0.0.0.6",
            "master.foo.com. A 0.0.0.8",
            "master.foo.com. AAAA 2001:db8::1",
            "master0.foo.com. A 0.0.0.8",
            "master1.foo.com. A 0.0.0.6",
            "master2.foo.com. AAAA 2001:db8::1",
        ]),
    ));
    assert_eq!(cases.len(), 14, "every case of TestMasterRecord");
    for (i, (masters, leader, want)) in cases.iter().enumerate() {
        let got = records("foo.com", &masters_only(leader, masters));
        assert_eq!(
            got,
            sorted(want),
            "case {} ({leader:?}, {masters:?})",
            i + 1
        );
    }
}

/// Agents: every address under `slave.<d>`, one SRV per port; frameworks
/// under their name (Mesos-DNS's label rule), SRV only with a port.
#[test]
fn agent_and_framework_records() {
    let ep = |ip: &str, port| Endpoint {
        ip: ip.parse().unwrap(),
        port,
    };
    let c = Cluster {
        agents: vec![ep("198.18.0.1", Some(5051)), ep("fd00::2", None)],
        frameworks: vec![
            ("My Framework".into(), ep("198.18.0.3", Some(8080))),
            ("no-port".into(), ep("198.18.0.4", None)),
        ],
        ..Cluster::default()
    };
    assert_eq!(
        records("mesos", &c),
        sorted(&[
            "slave.mesos. A 198.18.0.1",
            "slave.mesos. AAAA fd00::2",
            "_slave._tcp.mesos. SRV slave.mesos.:5051",
            "myframework.mesos. A 198.18.0.3",
            "_framework._tcp.myframework.mesos. SRV myframework.mesos.:8080",
            "no-port.mesos. A 198.18.0.4",
        ])
    );
}

/// A framework may pick any name, but not one that locates the cluster.
#[test]
fn a_framework_cannot_take_the_cluster_names() {
    let at = Endpoint {
        ip: "198.18.0.66".parse().unwrap(),
        port: Some(1),
    };
    for name in ["leader", "Master", "master0", "master12", "slave", "ns1"] {
        let c = Cluster {
            frameworks: vec![(name.into(), at)],
            ..Cluster::default()
        };
        assert_eq!(records("mesos", &c), Vec::<String>::new(), "{name}");
    }
    let c = Cluster {
        frameworks: vec![("masters".into(), at)],
        ..Cluster::default()
    };
    assert_eq!(records("mesos", &c).len(), 2);
}

/// `--dns-domain`: a DNS name, lower-cased, never one of dcos-net's zones,
/// inside one, or above one.
#[test]
fn dns_domain_is_checked() {
    use crate::dns::domain::{DomainError, mesos_domain};
    assert_eq!(mesos_domain("mesos").unwrap(), "mesos");
    assert_eq!(mesos_domain("Foo.COM.").unwrap(), "foo.com");
    for bad in ["", ".", "a..b", "-a", "a_b.c", "a b", &"x".repeat(64)] {
        assert!(
            matches!(mesos_domain(bad), Err(DomainError::Invalid(..))),
            "{bad:?}"
        );
    }
    for clash in [
        "l4lb.thisdcos.directory",
        "x.dcos.thisdcos.directory",
        "thisdcos.directory",
        "directory",
    ] {
        let e = mesos_domain(clash).unwrap_err();
        assert!(matches!(e, DomainError::Clash { .. }), "{clash}: {e}");
        assert!(e.to_string().contains("thisdcos.directory"), "{e}");
    }
}
