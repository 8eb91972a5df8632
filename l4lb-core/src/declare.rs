//! What every source declares about a VIP, decided once: the framework named
//! VIPs belong to, protocol lists, what a VIP label points at, and which
//! backends an explicit VIP can take. The static file, Marathon and the
//! sources to come call these; each keeps its own error policy:
//! - the static file is written by an operator: any bad entry fails the
//!   whole file (nothing is applied), repeated protocols included;
//! - a control plane's data is not ours to refuse: a bad label, port or task
//!   is left out with a warning naming it, and repeats are merged as the
//!   control plane itself accepts them.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use crate::model::{Proto, same_family};
use crate::naming::{self, Family, VipName};

/// Framework of every named VIP: Marathon's. dcos-net names a VIP
/// `<label>.<framework>` and a static-file `name: /redis:6379` must be the
/// same VIP (name and address) as a Marathon app's `VIP_0: /redis:6379`.
pub const FRAMEWORK: &str = "marathon";

/// What a protocol list that names a protocol twice (`tcp,tcp`) means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeats {
    /// An error (the operator's file).
    Refuse,
    /// The same as once (what Marathon accepts).
    Merge,
}

/// `tcp`, `udp`, or both comma-separated (Marathon's `udp,tcp`); absent:
/// tcp. Sorted, each once.
pub fn protocols(s: Option<&str>, repeats: Repeats) -> Result<Vec<Proto>, String> {
    let Some(s) = s else {
        return Ok(vec![Proto::Tcp]);
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let p: Proto = part.trim().parse().map_err(|_| {
            format!("unknown protocol {s:?} (expected tcp, udp, \"udp,tcp\" or \"tcp,udp\")")
        })?;
        if out.contains(&p) {
            if repeats == Repeats::Refuse {
                return Err(format!("{s:?} lists {p} twice"));
            }
            continue;
        }
        out.push(p);
    }
    out.sort();
    Ok(out)
}

/// What a VIP declaration points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A named VIP: its allocator key (`redis.marathon`) and port. Shared:
    /// the catalog files every task's backends under it.
    Named { key: Arc<str>, port: u16 },
    /// An explicit address (IPv4-mapped IPv6 made IPv4).
    Ip(SocketAddr),
}

/// An explicit VIP address: never the unspecified address (connect() to
/// 0.0.0.0 or :: reaches the local host; hooking it would capture unrelated
/// traffic).
pub fn explicit(addr: SocketAddr) -> Result<SocketAddr, String> {
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    if addr.ip().is_unspecified() {
        return Err(format!("{addr} is the unspecified address"));
    }
    Ok(addr)
}

/// A named VIP's allocator key, or why the name has none.
pub fn named_key(name: &str) -> Result<String, String> {
    named_key_in(name, FRAMEWORK)
}

/// [`named_key`] for a VIP of another framework (Mesos tasks name theirs
/// after the task's framework: `api.hello-world`).
pub fn named_key_in(name: &str, framework: &str) -> Result<String, String> {
    naming::vip_key(name, framework).ok_or_else(|| format!("{name:?} has no DNS name"))
}

/// A VIP label value (`/redis:6379`, `redis:6379`, `1.2.3.4:80`,
/// `[fd00::1]:80`) → what it points at.
pub fn label_target(value: &str) -> Result<Target, String> {
    label_target_in(value, FRAMEWORK)
}

/// [`label_target`] with named VIPs keyed under `framework`.
pub fn label_target_in(value: &str, framework: &str) -> Result<Target, String> {
    let (label, key) = naming::parse_vip_label_keyed(value).map_err(|e| e.to_string())?;
    match label.name {
        VipName::Ip(ip) => {
            let ip = ip.to_canonical();
            if ip.is_unspecified() {
                return Err(format!(
                    "VIP label {value:?}: {ip} is the unspecified address"
                ));
            }
            Ok(Target::Ip(SocketAddr::new(ip, label.port)))
        }
        // The check above keyed it under Marathon's framework already.
        VipName::Named(name) => key
            .filter(|_| framework == FRAMEWORK)
            .map_or_else(|| named_key_in(&name, framework), Ok)
            .map(|key| Target::Named {
                key: key.into(),
                port: label.port,
            })
            .map_err(|m| format!("VIP label {value:?}: {m}")),
    }
}

/// An explicit VIP takes backends of its own family only (a socket hook
/// cannot change it); a named VIP takes every family and gets an address in
/// each.
pub fn backend_family(vip: IpAddr, backend: SocketAddr) -> Result<(), String> {
    if same_family(vip, backend.ip()) {
        return Ok(());
    }
    Err(format!(
        "{backend} is {} but the VIP is {}: a socket hook cannot change the family",
        Family::of(backend.ip()),
        Family::of(vip),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lists_follow_the_sources_policy() {
        use Proto::{Tcp, Udp};
        for repeats in [Repeats::Refuse, Repeats::Merge] {
            assert_eq!(protocols(None, repeats), Ok(vec![Tcp]));
            assert_eq!(protocols(Some("udp,tcp"), repeats), Ok(vec![Tcp, Udp]));
            assert_eq!(protocols(Some(" UDP "), repeats), Ok(vec![Udp]));
            assert!(
                protocols(Some("sctp"), repeats)
                    .unwrap_err()
                    .contains("unknown protocol")
            );
        }
        assert_eq!(
            protocols(Some("tcp,tcp"), Repeats::Refuse),
            Err("\"tcp,tcp\" lists tcp twice".into())
        );
        assert_eq!(protocols(Some("tcp,tcp"), Repeats::Merge), Ok(vec![Tcp]));
    }

    #[test]
    fn labels_point_at_names_or_addresses() {
        assert_eq!(
            label_target("/api.hello-world:80"),
            Ok(Target::Named {
                key: "api.hello-world.marathon".into(),
                port: 80
            })
        );
        assert_eq!(
            label_target("[::ffff:198.18.0.1]:80"),
            Ok(Target::Ip("198.18.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            label_target("0.0.0.0:80"),
            Err("VIP label \"0.0.0.0:80\": 0.0.0.0 is the unspecified address".into())
        );
        assert!(label_target("/:80").is_err());
        // Another framework keys the name under its own.
        assert_eq!(
            label_target_in("/My_App:80", "other-fw"),
            Ok(Target::Named {
                key: "my-app.other-fw".into(),
                port: 80
            })
        );
        let v4 = "198.18.0.1".parse().unwrap();
        assert_eq!(
            backend_family(v4, "[fd00::1]:80".parse().unwrap()),
            Err(
                "[fd00::1]:80 is IPv6 but the VIP is IPv4: a socket hook cannot change the family"
                    .into()
            )
        );
        assert!(backend_family(v4, "198.18.0.2:80".parse().unwrap()).is_ok());
    }
}
