//! Mesos-DNS's cluster records on its own input: `records/generator_test.go`
//! `TestInsertState` reads `factories/fake.json` with the leader set to
//! `master@144.76.157.37:5050` and the masters `["144.76.157.37:5050"]`;
//! here the same file goes through the `/master/state` read.
use std::{collections::BTreeSet, net::IpAddr, sync::Arc};

use hickory_proto::rr::{LowerName, Name, RData};

use super::{cluster::parse_host_port, master_state::MasterState, peer_tests::read_fixture, *};
use crate::dns::records::{Lookup, ZoneOptions, Zones, build_zones};
use crate::hosts::HostTable;
use crate::model::Catalog;

/// fake.json's zones, its cluster as TestInsertState sets it up.
fn fake_zones(domain: &str) -> Zones {
    let mut st: MasterState =
        serde_json::from_str(&read_fixture("mesos-dns/factories/fake.json")).unwrap();
    st.leader = Some("master@144.76.157.37:5050".into());
    let hosts = HostTable::default();
    let snap = from_master_state(&st, &hosts);
    let mut facts = snap.cluster.clone();
    facts.masters = vec![parse_host_port("144.76.157.37:5050").unwrap()];
    let catalog = Catalog {
        cluster: Some(Arc::new(facts.resolve(&hosts))),
        ..Catalog::default()
    };
    let opts = ZoneOptions {
        mesos_domain: domain.into(),
        ..ZoneOptions::default()
    };
    build_zones(&catalog, &Default::default(), &opts)
}

/// `name`'s A/AAAA addresses and SRV `target:port`s, as text, sorted.
fn data(z: &Zones, name: &str) -> BTreeSet<String> {
    let n = LowerName::new(&Name::from_ascii(name).unwrap());
    let Lookup::Found(_, records) = z.lookup(&n) else {
        return BTreeSet::new();
    };
    records
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0).to_string()),
            RData::AAAA(a) => Some(IpAddr::V6(a.0).to_string()),
            RData::SRV(s) => Some(format!("{}:{}", s.target(), s.port())),
            _ => None,
        })
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// TestInsertState's cluster rows, value for value. Its framework name row
/// (`some-box.chronoswithaspaceandmixe.mesos`) is RFC 952 mode; l4lb names
/// as DC/OS does (RFC 1123), so the scheduler `chronos with a space AND
/// MIXED CASE-2.0.1` (pid on 1.2.3.12) is `chronoswithaspaceandmixedcase-2.0.1`.
#[test]
fn mesos_dns_insert_state_cluster_records() {
    let z = fake_zones("mesos");
    let leader = set(&["144.76.157.37"]);
    assert_eq!(data(&z, "master.mesos."), leader);
    assert_eq!(data(&z, "master0.mesos."), leader);
    assert_eq!(data(&z, "leader.mesos."), leader);
    assert_eq!(data(&z, "master1.mesos."), set(&[]));
    assert_eq!(
        data(&z, "slave.mesos."),
        set(&["1.2.3.10", "1.2.3.11", "1.2.3.12", "2001:db8::1"])
    );
    assert_eq!(data(&z, "marathon.mesos."), set(&["1.2.3.11"]));
    assert_eq!(data(&z, "ipv6-framework.mesos."), set(&["2001:db8::1"]));
    assert_eq!(
        data(&z, "_leader._tcp.mesos."),
        set(&["leader.mesos.:5050"])
    );
    assert_eq!(
        data(&z, "_leader._udp.mesos."),
        set(&["leader.mesos.:5050"])
    );
    assert_eq!(data(&z, "_slave._tcp.mesos."), set(&["slave.mesos.:5051"]));
    assert_eq!(
        data(&z, "_framework._tcp.marathon.mesos."),
        set(&["marathon.mesos.:25501"])
    );
    assert_eq!(
        data(&z, "chronoswithaspaceandmixedcase-2.0.1.mesos."),
        set(&["1.2.3.12"])
    );
    // `no pid` is on `localhost`, which the (empty) host table does not know.
    assert_eq!(data(&z, "no-pid.mesos."), set(&[]));
}

/// The same state under `--dns-domain foo.com`: every cluster name moves.
#[test]
fn cluster_records_follow_the_dns_domain() {
    let z = fake_zones("foo.com");
    assert_eq!(data(&z, "leader.foo.com."), set(&["144.76.157.37"]));
    assert_eq!(
        data(&z, "_leader._tcp.foo.com."),
        set(&["leader.foo.com.:5050"])
    );
    assert_eq!(
        data(&z, "_framework._tcp.marathon.foo.com."),
        set(&["marathon.foo.com.:25501"])
    );
    assert_eq!(data(&z, "slave.foo.com.").len(), 4);
    assert_eq!(data(&z, "leader.mesos."), set(&[]));
    assert!(matches!(
        z.lookup(&LowerName::new(&Name::from_ascii("leader.mesos.").unwrap())),
        Lookup::NotOurs
    ));
}

/// Operator API mode (dcos-net's `operator-api.json` stream): agents from
/// their pids, frameworks from their host names (no pid there: no SRV).
#[test]
fn operator_api_cluster_facts() {
    let st = super::peer_tests::stream("operator-api.json");
    let c = st.cluster_facts().resolve(&HostTable::default());
    let agents: Vec<_> = c
        .agents
        .iter()
        .map(|a| (a.ip.to_string(), a.port))
        .collect();
    assert_eq!(
        agents,
        [
            ("172.17.0.4".into(), Some(5051)),
            ("172.17.0.3".into(), Some(5051))
        ]
    );
    let fws: Vec<_> = c
        .frameworks
        .iter()
        .map(|(n, e)| (n.as_str(), e.ip.to_string(), e.port))
        .collect();
    assert!(
        fws.contains(&("metronome", "172.17.0.2".into(), None)),
        "{fws:?}"
    );
    assert_eq!(c.leader, None);
}
