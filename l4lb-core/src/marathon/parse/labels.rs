//! VIP declarations from labels: `VIP_*` on a port, legacy `vip_PORT<n>` on
//! an app or a task.
use std::collections::BTreeMap;

use super::{catalog::GroupKey, ports::PortSpec};
use crate::declare::{self, Target};
use crate::model::{Proto, Vip};

/// One VIP declaration on one port of an app (or of one task).
pub(super) struct Decl {
    pub(super) target: Target,
    /// The label value as written, minus a legacy `tcp://`: `ServiceSpec::name`.
    pub(super) label: String,
    pub(super) protos: Vec<Proto>,
    /// Index into the app's [`PortSpec`]s.
    pub(super) spec: usize,
    /// `portDefinitions[0] label VIP_0`, for messages.
    pub(super) origin: String,
    /// The framework of a named VIP when it is not Marathon's.
    pub(super) framework: Option<String>,
}

impl Decl {
    /// The group this declares for `proto`.
    pub(super) fn group_key(&self, proto: Proto) -> GroupKey {
        match &self.target {
            Target::Named { key, port } => GroupKey::Named {
                key: key.clone(),
                port: *port,
                proto,
            },
            Target::Ip(addr) => GroupKey::Ip(Vip { addr: *addr, proto }),
        }
    }
}

/// `VIP_*` labels of every port.
pub(super) fn port_decls(specs: &[PortSpec], warn: &mut dyn FnMut(String)) -> Vec<Decl> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let Some(protos) = &spec.protos else { continue };
        for (key, value) in spec.labels.iter().filter(|(k, _)| k.starts_with("VIP_")) {
            let origin = format!("{} label {key}", spec.field);
            match declare::label_target(value) {
                Ok(target) => out.push(Decl {
                    target,
                    label: value.clone(),
                    protos: protos.clone(),
                    spec: i,
                    origin,
                    framework: None,
                }),
                Err(m) => warn(format!("{origin}: {m}")),
            }
        }
    }
    out
}

/// Legacy `vip_PORT<n>` = `tcp://name:port` / `udp://name:port` labels (the
/// key is matched case-insensitively: both `vip_PORT0` and `vip_port0` exist
/// in the wild). `at` names where they are in messages: `""` for app labels,
/// `tasks[0] (id)` for a task's (formatted only for a label that matches).
pub(super) fn legacy_decls(
    labels: &BTreeMap<String, String>,
    specs: &[PortSpec],
    at: &str,
    warn: &mut dyn FnMut(String),
) -> Vec<Decl> {
    let mut out = Vec::new();
    for (key, value) in labels {
        let Some(index) = key
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("vip_port"))
            .and_then(|_| key.get(8..))
        else {
            continue;
        };
        let origin = match at {
            "" => format!("label {key}"),
            at => format!("{at} label {key}"),
        };
        match legacy_decl(index, value, specs.len(), &origin) {
            Ok(d) => out.push(d),
            Err(m) => warn(format!("{origin}: {m}")),
        }
    }
    out
}

/// What one `vip_PORT<index>` label declares, or why it declares nothing.
fn legacy_decl(index: &str, value: &str, ports: usize, origin: &str) -> Result<Decl, String> {
    let spec = index
        .parse::<usize>()
        .ok()
        .filter(|_| index.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("{index:?} is not a port index"))?;
    if spec >= ports {
        return Err(format!("the app has {ports} port(s), no port {spec}"));
    }
    let proto = match value.get(..6).map(str::to_ascii_lowercase).as_deref() {
        Some("tcp://") => Proto::Tcp,
        Some("udp://") => Proto::Udp,
        _ => {
            return Err(format!(
                "{value:?} is not tcp://name:port or udp://name:port"
            ));
        }
    };
    let rest = value.get(6..).unwrap_or_default();
    let target = declare::label_target(rest)?;
    Ok(Decl {
        target,
        label: rest.to_owned(),
        protos: vec![proto],
        spec,
        origin: origin.to_owned(),
        framework: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::declare::FRAMEWORK;
    use crate::marathon::parse::test_util::*;
    use crate::model::Proto;
    use crate::naming::{self, Family, VipAllocator};

    #[test]
    fn group_path_name() {
        let p = parse(&apps(json!([host_app(
            "/group/app",
            "/group/app:80",
            json!([running("t1", "10.0.0.1", &[31000])])
        )])));
        let (v, spec) = only_named(&p, "/group/app:80");
        assert_eq!(
            naming::vip_fqdn("/group/app", FRAMEWORK).as_deref(),
            Some("groupapp.marathon.l4lb.thisdcos.directory")
        );
        let mut alloc = VipAllocator::new();
        let want = alloc
            .allocate(Family::V4, &["groupapp.marathon".to_owned()].into())
            .unwrap();
        assert_eq!(
            v,
            vip(&format!("{}:80", want["groupapp.marathon"]), Proto::Tcp)
        );
        assert_eq!(spec.backends, backends(&[("10.0.0.1:31000", 1)]));
    }

    #[test]
    fn legacy_vip_port_labels() {
        let p = parse(&apps(json!([
            {"id": "/old", "portDefinitions": [{"port": 0}, {"port": 0, "protocol": "udp"}],
             "tasks": [
                {"id": "t1", "host": "10.0.0.1", "ports": [31000, 31001], "state": "TASK_RUNNING",
                 "labels": {"vip_PORT0": "tcp://legacy:5000", "vip_port1": "udp://10.10.0.1:53"}},
                {"id": "t2", "host": "10.0.0.2", "ports": [31100, 31101], "state": "TASK_RUNNING",
                 "labels": [{"key": "vip_PORT0", "value": "tcp://legacy:5000"}]},
                {"id": "t3", "host": "10.0.0.3", "ports": [31200, 31201], "state": "TASK_RUNNING"}
             ]},
            {"id": "/old-app-label", "labels": {"VIP_PORT0": "TCP:///applabel:7000"},
             "portDefinitions": [{"port": 0}],
             "tasks": [running("u1", "10.0.0.9", &[32000])]}
        ])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Task labels apply to their own task only.
        let (v, spec) = only_named(&p, "legacy:5000");
        assert_eq!((v.proto, v.addr.port()), (Proto::Tcp, 5000));
        assert_eq!(
            spec.backends,
            backends(&[("10.0.0.1:31000", 1), ("10.0.0.2:31100", 1)])
        );
        assert_eq!(
            services(&p)[&vip("10.10.0.1:53", Proto::Udp)].backends,
            backends(&[("10.0.0.1:31001", 1)])
        );
        // App labels reach every task of the app.
        assert_eq!(
            only_named(&p, "/applabel:7000").1.backends,
            backends(&[("10.0.0.9:32000", 1)])
        );
    }

    /// dcos-net's dcos_net_mesos_listener_SUITE `hello_overlay_world`: the
    /// hello-world SDK scheduler's task declares `VIP_0: /api.hello-world:80`;
    /// dcos-net names it `api.hello-world.marathon.l4lb.thisdcos.directory`
    /// (mesos_state domain_frag keeps the dot) and hashes
    /// `api.hello-world.marathon` to 11.46.7.245.
    #[test]
    fn dotted_label_keeps_its_dots() {
        let p = parse(&apps(json!([host_app(
            "/hello-world",
            "/api.hello-world:80",
            json!([running("hello-world.1", "10.0.0.49", &[19630])])
        )])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let (v, spec) = only_named(&p, "/api.hello-world:80");
        assert_eq!(v, vip("11.46.7.245:80", Proto::Tcp));
        assert_eq!(spec.backends, backends(&[("10.0.0.49:19630", 1)]));
        assert_eq!(
            naming::vip_fqdn("/api.hello-world", FRAMEWORK).as_deref(),
            Some("api.hello-world.marathon.l4lb.thisdcos.directory")
        );
    }
}
