//! VIP packets that escaped the socket hooks (a process outside `--cgroup`)
//! or that XDP passed on (another port of a VIP address) never leave the
//! node: every VIP address gets a host route (/32, /128) to `l4lb0`, an
//! interface the agent creates in its own network namespace that drops
//! whatever is routed to it: a dummy (counts it as transmitted), or, on a
//! kernel built without dummy devices, an ifb (drops every packet tc did not
//! redirect to it, counted as a receive drop). Either count is the
//! `l4lb_escaped_vip_packets` metric. Without these routes such packets
//! followed the default route to whoever owns the address (11.0.0.0/8 is
//! public). Local senders see their datagrams "sent" and TCP connects time
//! out; nothing reaches the wire.
//!
//! Routes follow the applied table (`sync` after every apply, by what the
//! apply changed: `escape/wanted.rs`). A VIP address
//! that is also a backend address or one of the agent's control-plane
//! endpoints (Marathon, DNS upstreams) gets no route: it would black-hole the
//! backend, or the agent's own reads (the hooks spare the agent, routes
//! cannot). `teardown` deletes the interface, and its routes with it.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use rtnetlink::{
    Handle, LinkDummy, LinkIfb, LinkUnspec, RouteMessageBuilder,
    packet_route::{
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
        route::{RouteAddress, RouteAttribute, RouteMessage},
    },
};

use crate::plan::Applied;

mod wanted;

use wanted::Wanted;

/// The dummy interface VIP routes point at.
pub const DEV: &str = "l4lb0";

/// The agent's VIP routes, as they are in the kernel.
pub struct EscapeRoutes {
    handle: Handle,
    ifindex: u32,
    routes: BTreeSet<IpAddr>,
    /// Which addresses are to be routed, counted from the applied tables.
    wanted: Wanted,
    /// Addresses whose route may not be what `wanted` says: those an apply
    /// touched, a failed request, every route found at start.
    pending: BTreeSet<IpAddr>,
}

/// What a sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub added: usize,
    pub removed: usize,
    /// VIP addresses left without a route: a backend or the control plane uses them.
    pub skipped: Vec<IpAddr>,
}

impl EscapeRoutes {
    /// Creates (or adopts) `l4lb0` in this process's netns, up, and reads the
    /// routes a previous run left on it. `protect`: addresses never routed.
    pub async fn setup(protect: BTreeSet<IpAddr>) -> Result<EscapeRoutes> {
        check_netns()?;
        let handle = connect()?;
        let ifindex = ensure_dummy(&handle).await?;
        let routes = routes_on(&handle, ifindex).await?;
        Ok(EscapeRoutes {
            handle,
            ifindex,
            pending: routes.clone(),
            routes,
            wanted: Wanted::new(&protect),
        })
    }

    /// Makes the routes on `l4lb0` exactly the applied VIP addresses (less
    /// those a backend uses). Stops at the first failure; the next sync
    /// retries what is still missing.
    pub async fn sync(&mut self, applied: &Applied) -> Result<Synced> {
        let touched = self.wanted.follow(applied);
        self.pending.extend(touched);
        let (routes, wanted) = (&self.routes, &self.wanted);
        self.pending
            .retain(|ip| routes.contains(ip) != wanted.wants(ip));
        let (stale, missing): (Vec<IpAddr>, Vec<IpAddr>) =
            self.pending.iter().partition(|ip| self.routes.contains(ip));
        let (handle, ifindex) = (&self.handle, self.ifindex);
        let removed = in_flight(stale, |ip| async move {
            match handle.route().del(route(ip, ifindex)).execute().await {
                Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
                r => r.with_context(|| format!("deleting the route {ip} dev {DEV}")),
            }
        })
        .await;
        for ip in &removed.done {
            self.routes.remove(ip);
            self.pending.remove(ip);
        }
        let added = in_flight(missing, |ip| async move {
            let add = handle.route().add(route(ip, ifindex)).replace();
            add.execute()
                .await
                .with_context(|| format!("adding the route {ip} dev {DEV}"))
        })
        .await;
        for ip in &added.done {
            self.routes.insert(*ip);
            self.pending.remove(ip);
        }
        if let Some(e) = removed.error.or(added.error) {
            return Err(e);
        }
        Ok(Synced {
            added: added.done.len(),
            removed: removed.done.len(),
            skipped: self.wanted.skipped(),
        })
    }

    /// The VIP addresses routed to `l4lb0` now.
    pub fn routes(&self) -> &BTreeSet<IpAddr> {
        &self.routes
    }
}

/// Netlink requests kept in flight at once: one request at a time makes a
/// first sync of thousands of VIPs wait a round trip per route (BENCHMARKS.md,
/// "Measurements behind choices in the code").
const IN_FLIGHT: usize = 32;

/// What a batch of route requests did: the addresses done, and the first error.
struct Batch {
    done: Vec<IpAddr>,
    error: Option<anyhow::Error>,
}

/// Runs `op` for every address, [`IN_FLIGHT`] at a time.
async fn in_flight<F, Fut>(ips: Vec<IpAddr>, op: F) -> Batch
where
    F: Fn(IpAddr) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut results = stream::iter(ips)
        .map(|ip| {
            let fut = op(ip);
            async move { (ip, fut.await) }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut batch = Batch {
        done: Vec::new(),
        error: None,
    };
    while let Some((ip, r)) = results.next().await {
        match r {
            Ok(()) => batch.done.push(ip),
            Err(e) => {
                batch.error.get_or_insert(e);
            }
        }
    }
    batch
}

/// VIP addresses to route, and those skipped because a backend has them or
/// they are in `protect`: what [`Wanted`] follows, compared whole.
#[cfg(test)]
fn wanted(applied: &Applied, protect: &BTreeSet<IpAddr>) -> (BTreeSet<IpAddr>, Vec<IpAddr>) {
    let mut backends: BTreeSet<IpAddr> = applied
        .backends
        .values()
        .map(|b| b.ip().to_canonical())
        .collect();
    let vips: BTreeSet<IpAddr> = applied
        .services
        .keys()
        .map(|v| v.addr.ip().to_canonical())
        .collect();
    backends.extend(protect.iter().map(|ip| ip.to_canonical()));
    let skipped = vips.intersection(&backends).copied().collect();
    (vips.difference(&backends).copied().collect(), skipped)
}

/// A host route to `ip` through interface `ifindex` (main table).
fn route(ip: IpAddr, ifindex: u32) -> RouteMessage {
    match ip {
        IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(a, 32)
            .output_interface(ifindex)
            .build(),
        IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(a, 128)
            .output_interface(ifindex)
            .build(),
    }
}

fn connect() -> Result<Handle> {
    let (conn, handle, _) =
        rtnetlink::new_connection().context("opening a route netlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The index of `l4lb0`, created if missing (a dummy, else an ifb), set up.
/// An existing `l4lb0` of another kind is someone else's: refused.
async fn ensure_dummy(handle: &Handle) -> Result<u32> {
    let index = match find(handle).await? {
        Some(link) if is_dummy(&link) => link.header.index,
        Some(_) => {
            bail!("an interface named {DEV} exists and is not a dummy or an ifb: not touching it")
        }
        None => {
            let dummy = handle
                .link()
                .add(LinkDummy::new(DEV).build())
                .execute()
                .await;
            match dummy {
                Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
                    handle
                        .link()
                        .add(LinkIfb::new(DEV).build())
                        .execute()
                        .await
                        .with_context(|| {
                            format!("creating {DEV} (no dummy devices in this kernel; ifb)")
                        })?;
                }
                other => other.with_context(|| format!("creating the dummy interface {DEV}"))?,
            }
            find(handle)
                .await?
                .with_context(|| format!("{DEV} vanished after creation"))?
                .header
                .index
        }
    };
    no_ipv6_address();
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .with_context(|| format!("setting {DEV} up"))?;
    Ok(index)
}

/// `l4lb0` only swallows packets: it must not get an IPv6 link-local address
/// when it comes up, or the node looks IPv6-connected to getaddrinfo's
/// AI_ADDRCONFIG (a netns whose only other interface is lo then has its
/// resolvers pick IPv6-only sockets: dnsperf's sends to 127.0.0.1 failed with
/// ENETUNREACH). Best effort: a kernel without IPv6 has no such file.
fn no_ipv6_address() {
    // IN6_ADDR_GEN_MODE_NONE; /proc/sys/net is this process's netns.
    let path = format!("/proc/sys/net/ipv6/conf/{DEV}/addr_gen_mode");
    if let Err(e) = std::fs::write(&path, "1")
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("{path}: {e}");
    }
}

async fn find(handle: &Handle) -> Result<Option<LinkMessage>> {
    match handle
        .link()
        .get()
        .match_name(DEV.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up {DEV}")),
    }
}

/// A dummy or an ifb: the kinds `ensure_dummy` creates.
fn is_dummy(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| {
        matches!(a, LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Dummy | InfoKind::Ifb))))
    })
}

/// Host routes through `ifindex` in the main table, both families.
async fn routes_on(handle: &Handle, ifindex: u32) -> Result<BTreeSet<IpAddr>> {
    let mut out = BTreeSet::new();
    for query in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(query).execute();
        while let Some(r) = routes.try_next().await.context("listing routes")? {
            if let Some(ip) = host_route_via(&r, ifindex) {
                out.insert(ip);
            }
        }
    }
    Ok(out)
}

fn host_route_via(r: &RouteMessage, ifindex: u32) -> Option<IpAddr> {
    let through = r
        .attributes
        .iter()
        .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == ifindex));
    let ip = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a))
            if r.header.destination_prefix_length == 32 =>
        {
            Some(IpAddr::V4(*a))
        }
        RouteAttribute::Destination(RouteAddress::Inet6(a))
            if r.header.destination_prefix_length == 128 =>
        {
            Some(IpAddr::V6(*a))
        }
        _ => None,
    })?;
    (through && r.header.table == 254).then_some(ip)
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Packets routed to `l4lb0` in this netns (escaped VIP packets, dropped),
/// from /proc/net/dev (per network namespace, unlike /sys/class/net). None:
/// no `l4lb0`. (A few of its own IPv6 link-up packets are counted too.)
pub fn escaped_packets() -> Option<u64> {
    let dev = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    dropped(&dev, DEV)
}

/// What `iface` dropped, from /proc/net/dev text: a dummy counts it as
/// transmitted packets, an ifb as receive drops (the other column stays 0).
fn dropped(dev: &str, iface: &str) -> Option<u64> {
    let line = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(iface)?.strip_prefix(':'))?;
    let col: Vec<u64> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    // Receive: bytes packets errs drop …(8 columns); transmit: bytes packets …
    Some(col.get(3)? + col.get(9)?)
}

/// Deletes `l4lb0` (and so every VIP route) in this netns, if it is ours.
/// Ok(false): there was none.
pub fn teardown() -> Result<bool> {
    if check_netns().is_err() {
        return Ok(false); // the agent never made one here either
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let handle = connect()?;
        match find(&handle).await? {
            Some(link) if is_dummy(&link) => {
                handle
                    .link()
                    .del(link.header.index)
                    .execute()
                    .await
                    .with_context(|| format!("deleting {DEV}"))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    })
}

/// With `L4LB_FORBID_HOST_NETNS` (the test harness) only a netns made with
/// `ip netns add` may get the interface and routes, never the host's.
fn check_netns() -> Result<()> {
    if std::env::var_os("L4LB_FORBID_HOST_NETNS").is_some() && !super::xdp::in_named_netns()? {
        bail!(
            "refusing to touch {DEV} and routes outside a named network namespace (L4LB_FORBID_HOST_NETNS is set)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Proto, Vip},
        plan::AppliedService,
    };

    #[test]
    fn dropped_reads_transmit_packets_and_receive_drops() {
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n l4lb0:       0       0    0    0    0     0          0         0     1234      17    0    0    0     0       0          0\n";
        assert_eq!(dropped(dev, "l4lb0"), Some(17));
        assert_eq!(dropped(dev, "lo"), Some(2));
        assert_eq!(dropped(dev, "eth0"), None);
        let ifb = " l4lb0:     474       9    0    9    0     0          0         0        0       0    0    0    0     0       0          0\n";
        assert_eq!(dropped(ifb, "l4lb0"), Some(9));
    }

    #[test]
    fn every_vip_address_is_routed_except_a_backend_or_protected_address() {
        let mut applied = Applied::default();
        for (vip, proto) in [
            ("11.0.0.1:80", Proto::Tcp),
            ("11.0.0.1:53", Proto::Udp),
            ("[fd01:c::1]:80", Proto::Tcp),
            ("10.0.0.5:80", Proto::Tcp),
        ] {
            applied.services.insert(
                Vip {
                    addr: vip.parse().unwrap(),
                    proto,
                },
                AppliedService::default(),
            );
        }
        applied.backends.insert(1, "10.0.0.5:8080".parse().unwrap());
        let (want, skipped) = wanted(&applied, &BTreeSet::new());
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<BTreeSet<IpAddr>>()
        };
        assert_eq!(want, ips(&["11.0.0.1", "fd01:c::1"]));
        assert_eq!(skipped, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        let protect = ips(&["11.0.0.1"]);
        assert_eq!(wanted(&applied, &protect).0, ips(&["fd01:c::1"]));
    }
}
