//! Connected UDP sockets whose backend was removed are destroyed.
//!
//! The connect hook rewrites a UDP socket's connect() from the VIP to one
//! backend, once; from then on the kernel sends every datagram of that socket
//! to that backend. When the backend leaves the VIP nothing would ever move
//! the socket, and the application would send into the void forever. So after
//! a table change the agent:
//!
//! 1. works out which (VIP, backend) pairs the change removed ([`policy`]);
//! 2. dumps the connected UDP sockets of its network namespace with sock_diag
//!    ([`diag`]: `SOCK_DIAG_BY_FAMILY`, protocol UDP, state mask ESTABLISHED =
//!    connected; AF_INET6 as well, for dual-stack sockets connected to
//!    `::ffff:a.b.c.d`);
//! 3. keeps those whose destination is exactly a removed backend `addr:port`
//!    AND for which the caller's predicate holds for (socket cookie, backend):
//!    the agent passes "the reverse-NAT map has an entry for this cookie and
//!    backend, and that entry's VIP no longer has the backend", i.e. the socket
//!    was connected THROUGH a VIP. A socket that talks to the same address by
//!    itself has no such entry and is never touched;
//! 4. destroys each with `SOCK_DESTROY`, naming it by its full id as the dump
//!    returned it (addresses, ports, interface AND cookie, so a socket that was
//!    closed and replaced in between is not hit: the kernel answers ENOENT).
//!
//! For UDP the kernel's destroy is `udp_abort()`: it sets `sk_err =
//! ECONNABORTED`, wakes the socket and disconnects it. A blocked or next
//! recv() fails with ECONNABORTED; a send() on the now unconnected socket fails
//! with EDESTADDRREQ. Either way the application learns, and a new connect()
//! through the VIP picks a live backend. Needs CONFIG_INET_DIAG_DESTROY and
//! CAP_NET_ADMIN; a kernel without it answers EOPNOTSUPP per socket (reported
//! in `errors`).
//!
//! Scope: sock_diag only ever sees the network namespace of the netlink socket,
//! i.e. the agent's own. No aya here (the predicate is how `datapath`
//! contributes the reverse-NAT lookup). The netlink messages come from the
//! rust-netlink crates (`netlink-packet-sock-diag`, which has SOCK_DESTROY
//! since 0.5, over `netlink-sys`), the same family as the `rtnetlink` the
//! VIP routes use.
mod diag;
mod policy;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use anyhow::Result;
use serde::Serialize;

use diag::{AF_INET, AF_INET6, SockDiag, family_name};
pub use policy::StaleUdp;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestroyReport {
    /// Connected UDP sockets to a removed backend that the predicate claimed.
    pub found: usize,
    /// Of those, destroyed.
    pub destroyed: usize,
    /// Of those, gone before we got to them (closed or reconnected: ENOENT).
    pub vanished: usize,
    /// Connected to a removed backend, but the predicate said "not ours": left alone.
    pub not_ours: usize,
    /// Failures: a family that could not be listed, a socket that could not be destroyed.
    pub errors: Vec<String>,
}

/// Destroys every connected UDP socket (IPv4, and IPv6 including v4-mapped
/// destinations) in this network namespace whose destination is exactly one
/// of `backends` and for which `is_ours(cookie, backend)` holds. `backend` is
/// the element of `backends` that matched, as given. Blocking; takes
/// milliseconds (one dump per family plus one request per destroyed socket).
///
/// Errors only if the sock_diag netlink socket cannot be opened; everything
/// after that is counted in the report.
pub fn destroy_connected_udp(
    backends: &[SocketAddr],
    is_ours: impl Fn(u64, SocketAddr) -> bool,
) -> Result<DestroyReport> {
    let mut report = DestroyReport::default();
    // Canonical form (v4-mapped → v4) → as given.
    let wanted: BTreeMap<SocketAddr, SocketAddr> =
        backends.iter().map(|b| (canonical(*b), *b)).collect();
    if wanted.is_empty() {
        return Ok(report);
    }
    let mut nl = SockDiag::open()?;
    let mut victims = Vec::new();
    for family in [AF_INET, AF_INET6] {
        // An AF_INET socket can only be connected to an IPv4 address; AF_INET6
        // ones are listed always (dual-stack sockets reach IPv4 backends too).
        if family == AF_INET && !wanted.keys().any(SocketAddr::is_ipv4) {
            continue;
        }
        let r = nl.dump_connected_udp(family, |s| {
            let Some(&backend) = wanted.get(&s.dst) else {
                return;
            };
            if is_ours(s.cookie, backend) {
                victims.push(s);
            } else {
                report.not_ours += 1;
            }
        });
        if let Err(e) = r {
            report.errors.push(format!(
                "listing {} UDP sockets: {e:#}",
                family_name(family)
            ));
        }
    }
    report.found = victims.len();
    for s in &victims {
        match nl.destroy(s) {
            Ok(()) => report.destroyed += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => report.vanished += 1,
            Err(e) => report.errors.push(format!(
                "destroying UDP socket {} -> {} (cookie {}): {e}",
                s.src, s.dst, s.cookie
            )),
        }
    }
    Ok(report)
}

/// IPv4-mapped IPv6 → IPv4, so `::ffff:10.0.0.1:53` and `10.0.0.1:53` match.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_opens_no_socket() {
        let r = destroy_connected_udp(&[], |_, _| panic!("no socket to ask about")).unwrap();
        assert_eq!(r, DestroyReport::default());
    }
}
