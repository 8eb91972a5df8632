//! Agents known by name (`task.host` a hostname): the catalog takes their
//! address from a [`HostTable`] snapshot, so a lookup that completes later
//! needs no re-read of the apps.
use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use super::{
    Warning,
    catalog::{Builder, GroupKey},
};
use crate::hosts::{HostTable, Lookup, Missing};
use crate::naming::Family;

impl Builder {
    /// Gives agents known by name their address from `hosts` (else, under
    /// host networking, the task's own): in the backends of every VIP and in
    /// the task records. A name with neither is one warning per app, and its
    /// host-port backends stay out until it resolves; a name still being
    /// looked up is left out without one (it settles within seconds).
    pub(super) fn resolve_agents(&mut self, hosts: &HostTable) {
        self.resolve_backends(hosts);
        self.resolve_task_agents(hosts);
    }

    /// Host-port backends on named agents → addresses; an IP VIP keeps only
    /// its own family.
    fn resolve_backends(&mut self, hosts: &HostTable) {
        let addr_of = |host: &str, fallback: Option<IpAddr>| match hosts.lookup(host) {
            Lookup::Addr(ip) => Ok(ip),
            Lookup::Missing(why) => fallback.ok_or(why),
        };
        for (gk, g) in &mut self.groups {
            for (hp, w) in std::mem::take(&mut g.by_name) {
                let Ok(ip) = addr_of(&hp.host, hp.fallback) else {
                    continue; // warned once per app by resolve_task_agents
                };
                if let GroupKey::Ip(vip) = gk
                    && Family::of(ip) != Family::of(vip.addr.ip())
                {
                    self.warnings.push(Warning {
                        app_id: g.apps.first().cloned(),
                        pod: false,
                        what: format!(
                            "agent {} is at {ip}, {} but the VIP {vip} is {}; left out",
                            hp.host,
                            Family::of(ip),
                            Family::of(vip.addr.ip())
                        ),
                    });
                    continue;
                }
                let e = g.backends.entry(SocketAddr::new(ip, hp.port)).or_insert(w);
                *e = (*e).max(w);
            }
        }
    }

    /// The task records' agent addresses; one warning per app and name that
    /// does not resolve.
    fn resolve_task_agents(&mut self, hosts: &HostTable) {
        let mut warned = BTreeSet::new();
        for n in &self.named_agents {
            let mut task = n.task.and_then(|i| self.tasks.get_mut(i));
            let why = match hosts.lookup(&n.host) {
                Lookup::Addr(ip) => {
                    if let Some(t) = task {
                        Arc::make_mut(t).agent_ip = Some(ip);
                    }
                    continue;
                }
                Lookup::Missing(why) => why,
            };
            if let (Some(t), Some(ip)) = (task.as_mut(), n.fallback) {
                Arc::make_mut(t).agent_ip = Some(ip);
            }
            let (app_id, pod) = (n.app_id.to_string(), n.pod);
            if matches!(why, Missing::Pending) || !warned.insert((app_id.clone(), n.host.clone())) {
                continue;
            }
            self.warnings.push(Warning {
                app_id: Some(app_id),
                pod,
                what: unresolved(&n.host, &why, n.fallback.is_some()),
            });
        }
    }
}

/// Why a named agent's tasks lose (or fall back from) their host-port
/// backends.
fn unresolved(host: &str, why: &Missing, has_fallback: bool) -> String {
    if has_fallback {
        format!(
            "agent host {host:?} {why}: its host-networking tasks are reached at their ipAddresses"
        )
    } else {
        format!("agent host {host:?} {why}: its tasks' host-port backends are left out")
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::Arc};

    use serde_json::{Value, json};

    use crate::hosts::{HostState, HostTable};
    use crate::marathon::{decode::decode_apps, parse::Parsed, parse::test_util::ip};
    use crate::naming::VipAllocator;

    fn build(apps: Value, hosts: &HostTable) -> Parsed {
        let body = json!({ "apps": apps }).to_string();
        let set = decode_apps(body.as_bytes()).unwrap();
        set.catalog_with(&mut VipAllocator::new(), hosts).unwrap()
    }

    fn backends_of(p: &Parsed, label: &str) -> Vec<SocketAddr> {
        p.catalog
            .services
            .services
            .values()
            .filter(|s| s.name.as_deref() == Some(label))
            .flat_map(|s| s.backends.keys().copied())
            .collect()
    }

    fn warnings(p: &Parsed) -> Vec<String> {
        p.warnings.iter().map(ToString::to_string).collect()
    }

    /// dcos-net's `dns_hostname_test` (`dcos_net_mesos_listener_tests.erl`,
    /// on `dns-hostname.json`): an agent registered as `localhost` has agent
    /// IP 127.0.0.1, and its task's records carry it.
    #[test]
    fn an_agent_named_localhost_is_127_0_0_1() {
        let apps = json!([{"id": "/test", "networks": [{"mode": "host"}],
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/test:80"}}],
            "tasks": [{"id": "test.f12cc459-cb38-11e8-a264-2e431fa5cff2", "host": "localhost",
                       "ports": [31000], "state": "TASK_RUNNING", "slaveId": "x-S4"}]}]);
        let hosts = HostTable::resolved([("localhost", ip("127.0.0.1"))]);
        let p = build(apps, &hosts);
        assert_eq!(p.catalog.tasks[0].agent_ip, Some(ip("127.0.0.1")));
        assert_eq!(
            backends_of(&p, "/test:80"),
            ["127.0.0.1:31000".parse().unwrap()]
        );
        assert!(p.hosts.contains("localhost"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    fn bridge_app(host: &str) -> Value {
        json!([{"id": "/web", "networks": [{"mode": "container/bridge"}],
            "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "/web:80"}}]},
            "tasks": [
                {"id": "web.1", "host": host, "ports": [31001], "state": "TASK_RUNNING",
                 "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}]},
                {"id": "web.2", "host": "198.18.0.3", "ports": [31002], "state": "TASK_RUNNING"}]}])
    }

    #[test]
    fn host_ports_on_a_named_agent_follow_its_address() {
        let host = "Agent-1.Example.";
        let pending = build(bridge_app(host), &HostTable::default());
        // Not looked up yet: that task's backend waits (never the container
        // address); no warning; the resolver is asked for the lower-case name.
        assert_eq!(
            backends_of(&pending, "/web:80"),
            ["198.18.0.3:31002".parse().unwrap()]
        );
        assert!(pending.warnings.is_empty(), "{:?}", pending.warnings);
        assert_eq!(
            pending.hosts.iter().map(|h| &**h).collect::<Vec<_>>(),
            ["agent-1.example"]
        );

        let resolved = HostTable::resolved([("agent-1.example", ip("198.18.0.9"))]);
        let p = build(bridge_app(host), &resolved);
        assert_eq!(
            backends_of(&p, "/web:80"),
            [
                "198.18.0.3:31002".parse().unwrap(),
                "198.18.0.9:31001".parse().unwrap()
            ]
        );
        let t = p
            .catalog
            .tasks
            .iter()
            .find(|t| *t.task_id == *"web.1")
            .unwrap();
        assert_eq!(t.agent_ip, Some(ip("198.18.0.9")));

        let mut failed = HostTable::default();
        failed.set(
            Arc::from("agent-1.example"),
            HostState::Failed("NXDOMAIN".into()),
        );
        let p = build(bridge_app(host), &failed);
        assert_eq!(
            backends_of(&p, "/web:80"),
            ["198.18.0.3:31002".parse().unwrap()]
        );
        assert_eq!(
            warnings(&p),
            [
                "app /web: agent host \"agent-1.example\" does not resolve (NXDOMAIN): \
              its tasks' host-port backends are left out"
            ]
        );
    }

    #[test]
    fn host_networking_falls_back_to_the_tasks_ip_addresses() {
        let apps = json!([{"id": "/db", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/db:5432"}}],
            "tasks": [{"id": "db.1", "host": "agent-2", "ports": [31010], "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "fd00::7", "protocol": "IPv6"},
                                       {"ipAddress": "198.18.0.7", "protocol": "IPv4"}]}]}]);
        let mut failed = HostTable::default();
        failed.set(Arc::from("agent-2"), HostState::Failed("timed out".into()));
        for (table, want) in [
            (HostTable::default(), "198.18.0.7"),
            (failed, "198.18.0.7"),
            (
                HostTable::resolved([("agent-2", ip("198.18.0.70"))]),
                "198.18.0.70",
            ),
        ] {
            let p = build(apps.clone(), &table);
            let addr = SocketAddr::new(ip(want), 31010);
            assert_eq!(backends_of(&p, "/db:5432"), [addr]);
            assert_eq!(p.catalog.tasks[0].agent_ip, Some(ip(want)));
        }
        let mut failed = HostTable::default();
        failed.set(Arc::from("agent-2"), HostState::Failed("timed out".into()));
        assert_eq!(
            warnings(&build(apps, &failed)),
            [
                "app /db: agent host \"agent-2\" does not resolve (timed out): \
              its host-networking tasks are reached at their ipAddresses"
            ]
        );
    }

    #[test]
    fn one_warning_per_app_and_host_and_ip_vips_keep_their_family() {
        let task = |id: &str, port: u16| json!({"id": id, "host": "gone.example", "ports": [port], "state": "TASK_RUNNING"});
        let apps = json!([
            {"id": "/a", "networks": [{"mode": "container/bridge"}],
             "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "/a:80"}}]},
             "tasks": [task("a.1", 31000), task("a.2", 31001), task("a.3", 31002)]},
            {"id": "/v6", "networks": [{"mode": "container/bridge"}],
             "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "[fd00::80]:80"}}]},
             "tasks": [{"id": "v6.1", "host": "v4only.example", "ports": [31003],
                        "state": "TASK_RUNNING"}]}]);
        let mut t = HostTable::resolved([("v4only.example", ip("198.18.0.4"))]);
        t.set(
            Arc::from("gone.example"),
            HostState::Failed("NXDOMAIN".into()),
        );
        let p = build(apps, &t);
        assert_eq!(
            warnings(&p),
            [
                "app /v6: agent v4only.example is at 198.18.0.4, IPv4 but the VIP \
                 [fd00::80]:80/tcp is IPv6; left out",
                "app /a: agent host \"gone.example\" does not resolve (NXDOMAIN): \
                 its tasks' host-port backends are left out",
            ]
        );
        assert!(p.catalog.services.services.is_empty());
    }

    #[test]
    fn a_host_that_is_neither_address_nor_name_is_warned_about() {
        let p = build(bridge_app("agent 1"), &HostTable::default());
        assert_eq!(
            warnings(&p),
            [
                "app /web: tasks[0] (web.1): host \"agent 1\" is neither an IP address nor a \
              host name; its host-port backends are left out"
            ]
        );
        assert!(p.hosts.is_empty());
    }
}
