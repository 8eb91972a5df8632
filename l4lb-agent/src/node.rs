//! What this node depends on, for the guard (`guard.rs`): its own addresses,
//! the endpoints of its control plane and its DNS resolvers. These reads
//! touch the system; the rules live in `guard.rs`.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use ipnet::IpNet;
use tracing::warn;
use url::Url;

use crate::guard::Guard;

/// How long a resolved control-plane name is trusted before it is looked up
/// again (Marathon behind `leader.mesos` moves with the leader).
const RESOLVE_EVERY: Duration = Duration::from_secs(30);
/// One lookup may not hold up an apply for longer than this.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the guard protects. The control plane's names are looked up
/// once at start and then by a background task, so no apply ever waits on DNS.
pub struct Protected {
    cidrs: Vec<IpNet>,
    /// Addresses fixed at start: `--dns-upstream`, resolv.conf nameservers.
    fixed: BTreeMap<IpAddr, String>,
    /// Control-plane URLs (Marathon), resolved now and then.
    urls: Arc<Vec<Url>>,
    resolved: Arc<Mutex<BTreeMap<IpAddr, String>>>,
}

impl Protected {
    pub fn new(
        cidrs: Vec<IpNet>,
        urls: Vec<Url>,
        dns_upstreams: &[std::net::SocketAddr],
        resolv_conf: &std::path::Path,
    ) -> Protected {
        let mut fixed = BTreeMap::new();
        for u in dns_upstreams {
            fixed.insert(u.ip(), format!("the DNS upstream {u}"));
        }
        let resolv = std::fs::read_to_string(resolv_conf).unwrap_or_default();
        for ip in nameservers(&resolv) {
            fixed
                .entry(ip)
                .or_insert_with(|| format!("the node's resolver {ip} ({})", resolv_conf.display()));
        }
        Protected {
            cidrs,
            fixed,
            urls: Arc::new(urls),
            resolved: Arc::default(),
        }
    }

    /// Looks the control-plane hosts up now, then every [`RESOLVE_EVERY`] in
    /// the background (Marathon behind `leader.mesos` moves with the leader).
    pub async fn resolve_and_follow(&self) {
        resolve(&self.urls, &self.resolved).await;
        let (urls, resolved) = (self.urls.clone(), self.resolved.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RESOLVE_EVERY).await;
                resolve(&urls, &resolved).await;
            }
        });
    }

    /// The control plane's addresses as last looked up: `--marathon` hosts,
    /// DNS upstreams, the node's resolvers.
    pub fn control_plane(&self) -> BTreeSet<IpAddr> {
        let resolved = lock(&self.resolved);
        self.fixed.keys().chain(resolved.keys()).copied().collect()
    }

    /// The guard for an apply now: the node's addresses are read each time
    /// (they change with DHCP, new interfaces, a pod's IP).
    pub fn guard(&self) -> Guard {
        let mut g = Guard::new(self.cidrs.clone());
        for (ip, what) in self.fixed.iter().chain(lock(&self.resolved).iter()) {
            g.protect(*ip, what.clone());
        }
        match addresses() {
            Ok(addrs) => addrs
                .into_iter()
                .for_each(|ip| g.protect(ip, "an address of this node")),
            Err(e) => warn!("guard: cannot list the node's addresses: {e}"),
        }
        g
    }
}

/// One round of lookups. A URL whose lookup fails keeps what the previous
/// round found for it.
async fn resolve(urls: &[Url], resolved: &Mutex<BTreeMap<IpAddr, String>>) {
    for url in urls {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let what = format!("the control-plane endpoint {url}");
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => {
                let mut map = lock(resolved);
                map.retain(|_, w| *w != what);
                for a in addrs {
                    map.insert(a.ip().to_canonical(), what.clone());
                }
            }
            Ok(Err(e)) => warn!("guard: cannot resolve {url}: {e}"),
            Err(_) => warn!("guard: resolving {url} timed out"),
        }
    }
}

/// The map, even if a panicking holder poisoned its lock (it holds no
/// invariant a panic could break).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every address on this network namespace's interfaces.
pub fn addresses() -> nix::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let Some(addr) = ifa.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            out.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            out.push(IpAddr::V6(v6.ip()));
        }
    }
    Ok(out)
}

/// `nameserver` lines of a resolv.conf.
fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        // A scoped IPv6 address (fe80::1%eth0) keeps its address part.
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nnameserver 198.18.0.53\nsearch x\nnameserver fd00::53\n  nameserver fe80::1%eth0\nnameserver bogus\n";
        let got: Vec<String> = nameservers(text).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["198.18.0.53", "fd00::53", "fe80::1"]);
    }

    #[tokio::test]
    async fn the_control_plane_takes_url_hosts_and_upstreams() {
        let urls: Vec<Url> = [
            "http://198.18.8.2:8080",
            "https://[fd00:8::2]/",
            "http://localhost:8080",
        ]
        .iter()
        .map(|u| u.parse().unwrap())
        .collect();
        let resolv = std::path::Path::new("/etc/resolv.conf");
        let p = Protected::new(
            Vec::new(),
            urls,
            &["198.18.8.53:53".parse().unwrap()],
            resolv,
        );
        p.resolve_and_follow().await;
        let got = p.control_plane();
        for ip in ["198.18.8.2", "fd00:8::2", "198.18.8.53", "127.0.0.1"] {
            assert!(
                got.contains(&ip.parse::<IpAddr>().unwrap()),
                "{ip} not in {got:?}"
            );
        }
    }

    #[test]
    fn the_node_has_at_least_loopback() {
        let addrs = addresses().unwrap();
        assert!(addrs.iter().any(|a| a.is_loopback()), "{addrs:?}");
    }
}
