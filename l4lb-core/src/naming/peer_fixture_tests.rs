//! Named VIPs on dcos-net's own payloads (../shared/peer-fixtures, laid
//! beside the checkout): the labels its tasks carry get the names and
//! addresses dcos-net gives them.
use std::{collections::BTreeSet, path::PathBuf};

use serde_json::Value;

use super::*;

/// dcos-net's operator-API payloads (one or more JSON documents).
fn dcos_net_fixture(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peer-fixtures/dcos-net/apps/dcos_net/test")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "peer fixture {} missing ({e}): shared/peer-fixtures must sit beside the checkout",
            path.display()
        )
    });
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|doc| doc.expect("fixture is JSON"))
        .collect()
}

/// Every `VIP_n` label value anywhere in `v` (Mesos `{key, value}` labels).
fn vip_labels(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(k)), Some(Value::String(val))) =
                (m.get("key"), m.get("value"))
                && k.starts_with("VIP_")
            {
                out.insert(val.clone());
            }
            m.values().for_each(|x| vip_labels(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| vip_labels(x, out)),
        _ => {}
    }
}

fn labels_of(fixture: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in dcos_net_fixture(fixture) {
        vip_labels(&doc, &mut out);
    }
    out
}

/// The named VIP's FQDN and IPv4 address, as l4lb serves them.
fn name_and_v4(value: &str) -> (String, IpAddr, u16) {
    let label = parse_vip_label(value).unwrap();
    let VipName::Named(name) = label.name else {
        panic!("{value}: not a named VIP")
    };
    let key = vip_key(&name, "marathon").unwrap();
    let mut alloc = VipAllocator::new();
    let addrs = alloc.allocate(Family::V4, &[key.clone()].into()).unwrap();
    (
        vip_fqdn(&name, "marathon").unwrap(),
        addrs[&key],
        label.port,
    )
}

/// dcos_net_mesos_listener_SUITE `hello_overlay_world` reads
/// `VIP_0: /api.hello-world:80` from hello-world.json (framework marathon);
/// dcos-net serves it as `api.hello-world.marathon.l4lb.thisdcos.directory`
/// at 11.0.0.0 + phash2(<<"api.hello-world.marathon">>, 16#FFFFFE).
#[test]
fn hello_world_sdk_api_vip() {
    let labels = labels_of("hello-world.json");
    assert_eq!(labels, ["/api.hello-world:80".to_owned()].into());
    let (fqdn, ip, port) = name_and_v4("/api.hello-world:80");
    assert_eq!(fqdn, "api.hello-world.marathon.l4lb.thisdcos.directory");
    assert_eq!(ip, "11.46.7.245".parse::<IpAddr>().unwrap());
    assert_eq!(port, 80);
}

/// dcos_net_mesos_listener_SUITE's vip-labels case: the port labels
/// `/abc:80`, `/cbd:80`, `/xyz:443` (the legacy `vip_port<n>` task labels are
/// read by the Marathon parser). Names are `<label>.marathon.l4lb…`, each in
/// 11.0.0.0–11.255.255.253 at its phash2 start.
#[test]
fn vip_labels_fixture_names() {
    let labels = labels_of("vip-labels.json");
    assert_eq!(
        labels,
        ["/abc:80", "/cbd:80", "/xyz:443"].map(str::to_owned).into()
    );
    for value in &labels {
        let (fqdn, ip, _) = name_and_v4(value);
        let bare = value.trim_start_matches('/').split(':').next().unwrap();
        assert_eq!(fqdn, format!("{bare}.marathon.{L4LB_ZONE}"));
        let offset = phash2::phash2(format!("{bare}.marathon").as_bytes(), V4_RANGE_SIZE);
        assert_eq!(
            ip,
            IpAddr::V4(Ipv4Addr::from(u32::from(V4_RANGE_START) + offset))
        );
    }
}
