//! Mesos-DNS task names and addresses on the peers' own payloads
//! (`../shared/peer-fixtures`, laid beside the checkout in CI). Pure: no
//! kernel, no sockets; the agent's zone builder is fed the tasks and its
//! records compared with what the peers' tests and a real DC/OS zone hold.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use l4lb_agent::{
    dns::{
        ip_sources::{self, IpSource},
        records::{ZoneOptions, Zones, build_zones},
    },
    model::{Catalog, Proto, TaskPort, TaskRecord},
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peer-fixtures");
    assert!(
        dir.is_dir(),
        "peer fixtures not found at {}: copy shared/ beside the checkout",
        dir.display()
    );
    dir
}

fn read_json(rel: &str) -> Value {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn zones(tasks: Vec<TaskRecord>, ip_sources: &[IpSource]) -> Zones {
    let catalog = Catalog {
        tasks: tasks.into_iter().map(Arc::new).collect(),
        ..Catalog::default()
    };
    let opts = ZoneOptions {
        ip_sources: ip_sources.to_vec(),
        ..ZoneOptions::default()
    };
    build_zones(&catalog, &BTreeSet::new(), &opts)
}

/// Every name of every zone → its A/AAAA addresses and SRV `target:port`s
/// (hickory's text forms, so this file needs no DNS crate of its own).
fn dump(z: &Zones) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for zone in z.zones() {
        for (name, records) in zone.iter() {
            let entry = out.entry(name.to_string()).or_default();
            for r in records.iter() {
                let text = r.data().to_string();
                match r.record_type().to_string().as_str() {
                    "A" | "AAAA" => {
                        entry.insert(text);
                    }
                    "SRV" => {
                        let f: Vec<&str> = text.split_whitespace().collect();
                        entry.insert(format!("{}:{}", f[3], f[2]));
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The data of `name` (relative to the root, no trailing dot); empty if it
/// does not exist.
fn rdata(z: &Zones, name: &str) -> BTreeSet<String> {
    dump(z).remove(&format!("{name}.")).unwrap_or_default()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The Marathon app path whose tasks Marathon names `name`: the reverse of
/// Marathon's rule (`big.dog` is app `/dog/big`).
fn app_id_of(task_name: &str) -> String {
    let segs: Vec<&str> = task_name.split('.').rev().collect();
    format!("/{}", segs.join("/"))
}

/// `slave(1)@1.2.3.10:5051` / `slave(1)@[2001:db8::1]:5051` → the IP.
fn pid_ip(pid: &str) -> Option<IpAddr> {
    let hostport = pid.rsplit('@').next()?;
    let host = hostport.rsplit_once(':')?.0;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The addresses Mesos would report for a task (its latest TASK_RUNNING
/// status): NetworkInfo addresses, then the Docker and Mesos containerizer
/// labels — the order of mesos-dns's `rg` generator in TestInsertState.
fn status_ips(task: &Value) -> Vec<IpAddr> {
    let statuses = task["statuses"].as_array().cloned().unwrap_or_default();
    let latest = statuses
        .iter()
        .filter(|s| s["state"] == "TASK_RUNNING")
        .max_by(|a, b| {
            let t = |s: &Value| s["timestamp"].as_f64().unwrap_or(0.0);
            t(a).total_cmp(&t(b))
        });
    let Some(st) = latest else { return vec![] };
    let mut out = vec![];
    for ni in st["container_status"]["network_infos"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for a in ni["ip_addresses"].as_array().into_iter().flatten() {
            out.extend(
                a["ip_address"]
                    .as_str()
                    .and_then(|s| s.parse::<IpAddr>().ok()),
            );
        }
    }
    for key in [
        "Docker.NetworkSettings.IPAddress",
        "MesosContainerizer.NetworkSettings.IPAddress",
    ] {
        for l in st["labels"].as_array().into_iter().flatten() {
            if l["key"] == key {
                out.extend(l["value"].as_str().and_then(|s| s.parse::<IpAddr>().ok()));
            }
        }
    }
    out
}

/// `[31354-31354, 31355-31355]` → 31354, 31355.
fn resource_ports(ranges: &str) -> Vec<u16> {
    let inner = ranges.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = vec![];
    for r in inner.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (lo, hi) = r.split_once('-').unwrap();
        out.extend(lo.parse::<u16>().unwrap()..=hi.parse::<u16>().unwrap());
    }
    out
}

/// One fake.json task as the agent's task record. A task with a DiscoveryInfo
/// is named by it and publishes its ports (as Marathon's tasks do); one
/// without is named by its task name and publishes its host-port resources.
fn fake_task(fw: &str, t: &Value, slaves: &[(String, IpAddr)]) -> Option<TaskRecord> {
    let agent_id = t["slave_id"].as_str()?.to_string();
    let agent_ip = slaves.iter().find(|(id, _)| *id == agent_id)?.1;
    let disc = &t["discovery"];
    let (name, ports, host_ports) = match disc["name"].as_str() {
        Some(n) => {
            let ports = disc["ports"]["ports"].as_array().into_iter().flatten();
            let ports = ports
                .map(|p| TaskPort {
                    port: p["number"].as_u64().unwrap() as u16,
                    protocols: [if p["protocol"] == "udp" {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    }]
                    .into(),
                    name: p["name"].as_str().map(Into::into),
                })
                .collect();
            (n, ports, false)
        }
        None => {
            let ports = resource_ports(t["resources"]["ports"].as_str().unwrap_or("[]"));
            let ports = ports
                .into_iter()
                .map(|port| TaskPort {
                    port,
                    protocols: [Proto::Tcp].into(),
                    name: None,
                })
                .collect();
            (t["name"].as_str()?, ports, true)
        }
    };
    Some(TaskRecord {
        app_id: app_id_of(name).into(),
        task_id: t["id"].as_str()?.into(),
        framework: fw.into(),
        agent_id: agent_id.into(),
        agent_ip: Some(agent_ip),
        task_ips: status_ips(t).into(),
        ports,
        host_ports,
        running: t["state"] == "TASK_RUNNING",
        healthy: None,
        in_pod: false,
        zone: None,
    })
}

fn fake_json_tasks() -> Vec<TaskRecord> {
    let state = read_json("mesos-dns/factories/fake.json");
    let slaves: Vec<(String, IpAddr)> = state["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?.to_string(), pid_ip(s["pid"].as_str()?)?)))
        .collect();
    let mut tasks = vec![];
    for f in state["frameworks"].as_array().unwrap() {
        let fw = f["name"].as_str().unwrap();
        for t in f["tasks"].as_array().into_iter().flatten() {
            tasks.extend(fake_task(fw, t, &slaves));
        }
    }
    assert!(tasks.len() >= 9, "fake.json: {} tasks", tasks.len());
    tasks
}

/// Mirrors mesos-dns records/generator_test.go TestInsertState, generator
/// `rg` (IPSources netinfo, docker, mesos, host) on factories/fake.json.
/// Mesos-DNS's test runs with RFC 952 labels; l4lb uses Mesos-DNS's default,
/// RFC 1123 (labels_test.go TestDomainFrag_RFC1123), so the chronos framework
/// keeps its whole name. Not mirrored: `_car-store._tcp.marathon.mesos` →
/// `….slave.mesos` (a task without DiscoveryInfo, which Marathon never runs).
#[test]
fn fake_json_netinfo_first() {
    use IpSource::*;
    let z = zones(fake_json_tasks(), &[Netinfo, Docker, Mesos, Host]);
    let cases: &[(&str, &[&str])] = &[
        ("big-dog.marathon.mesos", &["10.3.0.1"]),
        ("liquor-store.marathon.mesos", &["10.3.0.1", "10.3.0.2"]),
        (
            "liquor-store.marathon.slave.mesos",
            &["1.2.3.11", "1.2.3.12"],
        ),
        ("car-store.marathon.slave.mesos", &["1.2.3.11"]),
        ("nginx.marathon.mesos", &["10.3.0.3"]),
        ("poseidon.marathon.mesos", &[]),
        ("poseidon.marathon.slave.mesos", &[]),
        (
            "some-box.chronoswithaspaceandmixedcase-2.0.1.mesos",
            &["1.2.3.11"],
        ),
        ("toy-store.ipv6-framework.slave.mesos", &["2001:db8::1"]),
        (
            "_big-dog._tcp.marathon.mesos",
            &[
                "big-dog-4dfjd-0.marathon.mesos.:80",
                "big-dog-4dfjd-0.marathon.mesos.:443",
            ],
        ),
        ("_poseidon._tcp.marathon.mesos", &[]),
        (
            "_liquor-store._tcp.marathon.mesos",
            &[
                "liquor-store-4dfjd-0.marathon.mesos.:80",
                "liquor-store-4dfjd-0.marathon.mesos.:443",
                "liquor-store-zasmd-1.marathon.mesos.:80",
                "liquor-store-zasmd-1.marathon.mesos.:443",
            ],
        ),
        ("_liquor-store._udp.marathon.mesos", &[]),
        ("_liquor-store.marathon.mesos", &[]),
        (
            "_https._liquor-store._tcp.marathon.mesos",
            &[
                "liquor-store-4dfjd-0.marathon.mesos.:443",
                "liquor-store-zasmd-1.marathon.mesos.:443",
            ],
        ),
        (
            "_http._liquor-store._tcp.marathon.mesos",
            &[
                "liquor-store-4dfjd-0.marathon.mesos.:80",
                "liquor-store-zasmd-1.marathon.mesos.:80",
            ],
        ),
        // Mesos-DNS's slave SRVs of host-port resources, both protocols.
        (
            "_car-store._udp.marathon.slave.mesos",
            &[
                "car-store-zinaz-0.marathon.slave.mesos.:31364",
                "car-store-zinaz-0.marathon.slave.mesos.:31365",
            ],
        ),
        // The legacy set from the raw DiscoveryInfo name, kept.
        ("liquor.store.marathon.mesos", &["10.3.0.1", "10.3.0.2"]),
        ("big.dog.marathon.mesos", &["10.3.0.1"]),
    ];
    for (name, want) in cases {
        assert_eq!(rdata(&z, name), set(want), "{name}");
    }
    // The toy-store's AAAA: the container's, not the agent's.
    let v6: BTreeSet<String> = rdata(&z, "toy-store.ipv6-framework.mesos")
        .into_iter()
        .filter(|a| a.contains(':'))
        .collect();
    assert_eq!(v6, set(&["fd01:b::1:8000:2"]));
}

/// Mirrors TestInsertState's `rgSlave` (IPSources host) and, for DC/OS's
/// default (host, netinfo), the same agent answers: what a DC/OS cluster's
/// `<task>.marathon.mesos` gives.
#[test]
fn fake_json_host_first() {
    for sources in [&[IpSource::Host][..], &ip_sources::DCOS_IP_SOURCES] {
        let z = zones(fake_json_tasks(), sources);
        let cases: &[(&str, &[&str])] = &[
            ("liquor-store.marathon.mesos", &["1.2.3.11", "1.2.3.12"]),
            (
                "liquor-store.marathon.slave.mesos",
                &["1.2.3.11", "1.2.3.12"],
            ),
            ("nginx.marathon.mesos", &["1.2.3.11"]),
            ("car-store.marathon.slave.mesos", &["1.2.3.11"]),
            ("toy-store.ipv6-framework.slave.mesos", &["2001:db8::1"]),
        ];
        for (name, want) in cases {
            assert_eq!(rdata(&z, name), set(want), "{name} {sources:?}");
        }
        let toy = rdata(&z, "toy-store.ipv6-framework.mesos");
        assert!(toy.contains("2001:db8::1"), "{toy:?}");
        assert!(!toy.contains("fd01:b::1:8000:2"), "{toy:?}");
    }
    // Mirrors `rgNetinfo`: the container's IPv6 alone.
    let z = zones(fake_json_tasks(), &[IpSource::Netinfo]);
    let v6: BTreeSet<String> = rdata(&z, "toy-store.ipv6-framework.mesos")
        .into_iter()
        .filter(|a| a.contains(':'))
        .collect();
    assert_eq!(v6, set(&["fd01:b::1:8000:2"]));
}

/// `big-dog-7qzpn-s0` → `big-dog-*-s0`, in every label: canonical names with
/// the task-id hash hidden (a zone transfer and the tasks that made it are
/// not from the same run).
fn mask(name: &str) -> String {
    let masked: Vec<String> = name
        .split('.')
        .map(|label| {
            let parts: Vec<&str> = label.rsplitn(3, '-').collect();
            match parts.as_slice() {
                [tail, hash, head]
                    if hash.len() == 5
                        && tail.len() > 1
                        && tail.starts_with('s')
                        && tail[1..].bytes().all(|b| b.is_ascii_digit()) =>
                {
                    format!("{head}-*-{tail}")
                }
                _ => label.to_string(),
            }
        })
        .collect();
    masked.join(".")
}

/// True if `owner` is one of Marathon app `app`'s names in the `mesos` zone.
fn owned_by(owner: &str, app: &str) -> bool {
    let Some(rest) = owner
        .strip_suffix(".marathon.mesos.")
        .or_else(|| owner.strip_suffix(".marathon.slave.mesos."))
    else {
        return false;
    };
    let masked = mask(rest);
    let task = masked
        .split('.')
        .rfind(|l| *l != "_tcp" && *l != "_udp")
        .unwrap_or_default()
        .trim_start_matches('_');
    task == app
        || task
            .strip_prefix(app)
            .is_some_and(|t| t.starts_with("-*-s"))
}

/// `app`'s names and data, hashes masked.
fn app_records<'a>(
    all: impl Iterator<Item = (&'a String, &'a BTreeSet<String>)>,
    app: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    all.filter(|(owner, _)| owned_by(owner, app))
        .map(|(owner, data)| (mask(owner), data.iter().map(|d| mask(d)).collect()))
        .collect()
}

/// The real DC/OS zone transfer's records (dcos-net's
/// apps/dcos_dns/test/axfr.json), `As`, `AAAAs` and `SRVs` merged.
fn axfr_records() -> BTreeMap<String, BTreeSet<String>> {
    let axfr = read_json("dcos-net/apps/dcos_dns/test/axfr.json");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for kind in ["As", "AAAAs", "SRVs"] {
        for (name, data) in axfr["Records"][kind].as_object().unwrap() {
            let data = data
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_string());
            out.entry(name.clone()).or_default().extend(data);
        }
    }
    out
}

/// A Marathon app of the AXFR's cluster: name, agent IP, agent-id tail,
/// maps host ports, the container addresses Mesos reported for the same app
/// (dcos-net's operator-api.json), its port and port name.
struct AxfrApp(
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    u16,
    &'static str,
);

const AXFR_APPS: &[AxfrApp] = &[
    AxfrApp(
        "docker-on-bridge",
        "172.17.0.5",
        "S0",
        true,
        &["172.18.0.2"],
        23866,
        "http",
    ),
    AxfrApp(
        "docker-on-dcos",
        "172.17.0.5",
        "S0",
        false,
        &["9.0.2.130"],
        8080,
        "http",
    ),
    AxfrApp(
        "docker-on-host",
        "172.17.0.6",
        "S1",
        true,
        &["172.17.0.6"],
        12018,
        "http",
    ),
    AxfrApp(
        "docker-on-ipv6",
        "172.17.0.6",
        "S1",
        false,
        &["172.19.0.2", "fd01:b::2:8000:0:2"],
        8080,
        "http",
    ),
    AxfrApp(
        "none-on-host",
        "172.17.0.5",
        "S0",
        true,
        &["172.17.0.5"],
        31775,
        "http",
    ),
    AxfrApp(
        "ucr-on-bridge",
        "172.17.0.6",
        "S1",
        true,
        &["172.31.254.3"],
        18236,
        "http",
    ),
    AxfrApp(
        "ucr-on-host",
        "172.17.0.5",
        "S0",
        true,
        &["172.17.0.5"],
        5463,
        "http",
    ),
    AxfrApp(
        "hello-world",
        "172.17.0.5",
        "S0",
        true,
        &["172.17.0.5"],
        9453,
        "api",
    ),
];

fn axfr_task(app: &AxfrApp) -> TaskRecord {
    let AxfrApp(name, agent, tail, host_ports, ips, port, pname) = *app;
    TaskRecord {
        app_id: format!("/{name}").into(),
        task_id: format!("{name}.0ef76549-2630-11e8-af52-70b3d5800001").into(),
        framework: "marathon".into(),
        agent_id: format!("30257977-0153-499d-a5b0-35afd842ef4d-{tail}").into(),
        agent_ip: Some(agent.parse().unwrap()),
        task_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        ports: vec![TaskPort {
            port,
            protocols: [Proto::Tcp].into(),
            name: Some(pname.into()),
        }]
        .into(),
        host_ports,
        running: true,
        healthy: None,
        in_pod: false,
        zone: None,
    }
}

/// l4lb's `mesos` zone for the apps of a real DC/OS cluster equals that
/// cluster's Mesos-DNS zone transfer, app by app, hashes aside: the agent
/// IPv4 for every networking mode (DC/OS's IPSources host, netinfo), the
/// container's IPv6, `.slave` SRVs (tcp and udp) only for host ports,
/// named-port SRVs, and nothing more. Not compared: the pods (Marathon
/// `/v2/pods`, another part of the agent) and the two port-0 apps.
#[test]
fn dcos_axfr_names_per_app() {
    let z = zones(
        AXFR_APPS.iter().map(axfr_task).collect(),
        &ip_sources::DCOS_IP_SOURCES,
    );
    let ours = dump(&z);
    let theirs = axfr_records();
    for app in AXFR_APPS {
        let want = app_records(theirs.iter(), app.0);
        assert!(want.len() >= 4, "{}: {want:?}", app.0);
        assert_eq!(app_records(ours.iter(), app.0), want, "{}", app.0);
    }
}

/// marathon-lb's real Marathon 1.5 output (tests/marathon15_apps.json: app
/// `/pywebserver` on bridge networking, agent 10.0.2.148, container
/// 172.17.0.2, host port 1565 named `test`) through the agent's Marathon
/// decoder into DNS records. The hash `tzrok` is zbase32(sha1(task id)),
/// computed outside this code.
#[test]
fn marathon15_payload_names() {
    let body = std::fs::read(fixtures().join("marathon-lb/tests/marathon15_apps.json")).unwrap();
    let mut alloc = l4lb_agent::naming::VipAllocator::new();
    let parsed = l4lb_agent::marathon::parse::parse_apps(&body, &mut alloc).unwrap();
    let tasks: Vec<TaskRecord> = parsed
        .catalog
        .tasks
        .iter()
        .map(|t| TaskRecord::clone(t))
        .collect();
    assert_eq!(tasks.len(), 1);
    let z = zones(tasks.clone(), &ip_sources::DCOS_IP_SOURCES);
    let cases: &[(&str, &[&str])] = &[
        ("pywebserver.marathon.mesos", &["10.0.2.148"]),
        ("pywebserver.marathon.slave.mesos", &["10.0.2.148"]),
        ("pywebserver-tzrok-s1.marathon.mesos", &["10.0.2.148"]),
        (
            "_pywebserver._tcp.marathon.mesos",
            &["pywebserver-tzrok-s1.marathon.mesos.:1565"],
        ),
        (
            "_test._pywebserver._tcp.marathon.mesos",
            &["pywebserver-tzrok-s1.marathon.mesos.:1565"],
        ),
        ("_pywebserver._udp.marathon.mesos", &[]),
        (
            "_pywebserver._udp.marathon.slave.mesos",
            &["pywebserver-tzrok-s1.marathon.slave.mesos.:1565"],
        ),
        (
            "pywebserver.marathon.agentip.dcos.thisdcos.directory",
            &["10.0.2.148"],
        ),
        (
            "pywebserver.marathon.containerip.dcos.thisdcos.directory",
            &["172.17.0.2"],
        ),
        (
            "pywebserver.marathon.autoip.dcos.thisdcos.directory",
            &["10.0.2.148"],
        ),
    ];
    for (name, want) in cases {
        assert_eq!(rdata(&z, name), set(want), "{name}");
    }
    // Mesos-DNS's own default order puts the container first.
    let z = zones(tasks, &[IpSource::Netinfo, IpSource::Host]);
    assert_eq!(
        rdata(&z, "pywebserver.marathon.mesos"),
        set(&["172.17.0.2"])
    );
}

/// dcos-net's operator-API stream (apps/dcos_net/test/operator-api.json) as
/// the agent's task records: name, agent (its address from `get_agents`), the
/// addresses of the latest TASK_RUNNING status, and whether the task holds
/// host-port resources (host or bridge networking). Pods are left out (they
/// come from Marathon's `/v2/pods`, another part of the agent).
fn operator_api_tasks() -> Vec<TaskRecord> {
    let path = fixtures().join("dcos-net/apps/dcos_net/test/operator-api.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let agents = &events[0]["subscribed"]["get_state"]["get_agents"]["agents"];
    let agent_ip = |id: &str| -> Option<IpAddr> {
        let a = agents
            .as_array()?
            .iter()
            .find(|a| a["agent_info"]["id"]["value"] == id)?;
        a["agent_info"]["hostname"].as_str()?.parse().ok()
    };
    let mut tasks: Vec<TaskRecord> = vec![];
    for ev in &events {
        if ev["type"] == "TASK_ADDED" {
            let t = &ev["task_added"]["task"];
            let name = t["name"].as_str().unwrap();
            if name == "app" {
                continue; // a pod's container
            }
            let agent_id = t["agent_id"]["value"].as_str().unwrap().to_string();
            let host_ports = t["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "ports");
            tasks.push(TaskRecord {
                app_id: app_id_of(name).into(),
                task_id: t["task_id"]["value"].as_str().unwrap().into(),
                framework: "marathon".into(),
                agent_ip: agent_ip(&agent_id),
                agent_id: agent_id.into(),
                task_ips: [].into(),
                ports: Box::default(),
                host_ports,
                running: false,
                healthy: None,
                in_pod: false,
                zone: None,
            });
        } else if ev["type"] == "TASK_UPDATED" && ev["task_updated"]["state"] == "TASK_RUNNING" {
            let st = &ev["task_updated"]["status"];
            let id = st["task_id"]["value"].as_str().unwrap();
            let Some(task) = tasks.iter_mut().find(|t| *t.task_id == *id) else {
                continue;
            };
            task.running = true;
            let mut ips = Vec::new();
            for ni in st["container_status"]["network_infos"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for a in ni["ip_addresses"].as_array().into_iter().flatten() {
                    ips.extend(
                        a["ip_address"]
                            .as_str()
                            .and_then(|s| s.parse::<IpAddr>().ok()),
                    );
                }
            }
            task.task_ips = ips.into();
        }
    }
    assert_eq!(tasks.len(), 9, "operator-api.json apps");
    tasks
}

/// Mirrors dcos-net apps/dcos_dns/test/dcos_dns_mesos_tests.erl basic_test_
/// (every networking mode but pods) on the same operator-API payload:
/// `<app>.marathon.{agentip,autoip,containerip}.dcos.thisdcos.directory`.
#[test]
fn dcos_net_agentip_autoip_containerip() {
    let z = zones(operator_api_tasks(), &ip_sources::DCOS_IP_SOURCES);
    let cases: &[(&str, &str, &str, &str)] = &[
        ("none-on-host", "172.17.0.4", "172.17.0.4", "172.17.0.4"),
        ("none-on-dcos", "172.17.0.4", "9.0.2.5", "9.0.2.5"),
        ("ucr-on-host", "172.17.0.3", "172.17.0.3", "172.17.0.3"),
        ("ucr-on-bridge", "172.17.0.3", "172.17.0.3", "172.31.254.3"),
        ("ucr-on-dcos", "172.17.0.3", "9.0.1.6", "9.0.1.6"),
        ("docker-on-host", "172.17.0.4", "172.17.0.4", "172.17.0.4"),
        ("docker-on-bridge", "172.17.0.4", "172.17.0.4", "172.18.0.2"),
        ("docker-on-dcos", "172.17.0.4", "9.0.2.130", "9.0.2.130"),
    ];
    let name = |app: &str, kind: &str| format!("{app}.marathon.{kind}.dcos.thisdcos.directory");
    for (app, agentip, autoip, containerip) in cases {
        assert_eq!(rdata(&z, &name(app, "agentip")), set(&[agentip]), "{app}");
        assert_eq!(rdata(&z, &name(app, "autoip")), set(&[autoip]), "{app}");
        assert_eq!(
            rdata(&z, &name(app, "containerip")),
            set(&[containerip]),
            "{app}"
        );
    }
    // docker_on_ipv6: the agent's IPv4; the container's IPv6 for the others.
    let v6 = |n: String| -> BTreeSet<String> {
        rdata(&z, &n)
            .into_iter()
            .filter(|a| a.contains(':'))
            .collect()
    };
    assert_eq!(
        rdata(&z, &name("docker-on-ipv6", "agentip")),
        set(&["172.17.0.4"])
    );
    assert_eq!(
        v6(name("docker-on-ipv6", "autoip")),
        set(&["fd01:b::2:8000:0:2"])
    );
    assert_eq!(
        v6(name("docker-on-ipv6", "containerip")),
        set(&["fd01:b::2:8000:0:2"])
    );
    // And Mesos-DNS's name for the same tasks on DC/OS: the agent.
    assert_eq!(
        rdata(&z, "docker-on-dcos.marathon.mesos"),
        set(&["172.17.0.4"])
    );
}
