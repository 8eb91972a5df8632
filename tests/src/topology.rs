//! Three network namespaces for the packet datapath:
//!
//! ```text
//!  client (c0) ── veth ── (n0) node (n1) ── veth ── (b0) backends
//!  198.18.1.2             .1.1   fwd   .2.1         198.18.2.2-4
//!  fd00:c1::2             c1::1        b1::1        fd00:b1::2-4
//! ```
//!
//! The agent runs in `node` with `--xdp-iface n0` (XDP on the client-facing
//! ingress, the tc reply program on its egress); the node forwards. The client
//! routes the VIP ranges (11.0.0.0/8, fd01:c::/64) via the node, the backends
//! route the client subnet via the node, so replies come back through it.
//! Each namespace is a [`Sandbox`] (its own netns and cgroup; nothing is
//! attached to the client's or backends' cgroups), removed on drop.
//! Addresses are from 198.18.0.0/15 (benchmarking, RFC 2544) and fd00::/8, and
//! exist only on these veths: no namespace has a route anywhere else.
//!
//! All four veth ends run with checksum offload off (ethtool `rx off tx off`),
//! so senders put full checksums on every packet, as a frame from a wire has,
//! and receivers verify them in software: a bad rewrite is dropped by the
//! backend's or client's stack instead of passing as CHECKSUM_PARTIAL.
use std::process::Command;

use anyhow::{Context, Result};

use crate::{sandbox::Sandbox, sys};

pub const CLIENT_IP4: &str = "198.18.1.2";
pub const CLIENT_IP6: &str = "fd00:c1::2";
pub const BACKEND_IP4: [&str; 3] = ["198.18.2.2", "198.18.2.3", "198.18.2.4"];
pub const BACKEND_IP6: [&str; 3] = ["fd00:b1::2", "fd00:b1::3", "fd00:b1::4"];
/// The node's client-facing interface: give it to `--xdp-iface`.
pub const NODE_IN: &str = "n0";
/// The node's backend-facing interface.
pub const NODE_OUT: &str = "n1";

pub struct Topology {
    pub client: Sandbox,
    pub node: Sandbox,
    pub backends: Sandbox,
}

impl Topology {
    pub fn new(tag: &str) -> Result<Topology> {
        let t = Topology {
            client: Sandbox::new(&format!("{tag}-c"))?,
            node: Sandbox::new(&format!("{tag}-n"))?,
            backends: Sandbox::new(&format!("{tag}-b"))?,
        };
        let (c, n, b) = (t.client.netns(), t.node.netns(), t.backends.netns());
        let ip = |args: &[&str]| sys::run(Command::new("ip").args(args)).map(drop);
        ip(&[
            "-n", n, "link", "add", NODE_IN, "type", "veth", "peer", "name", "c0", "netns", c,
        ])?;
        ip(&[
            "-n", n, "link", "add", NODE_OUT, "type", "veth", "peer", "name", "b0", "netns", b,
        ])?;
        let addrs: [(&str, &str, &[&str]); 4] = [
            (c, "c0", &["198.18.1.2/24", "fd00:c1::2/64"]),
            (n, NODE_IN, &["198.18.1.1/24", "fd00:c1::1/64"]),
            (n, NODE_OUT, &["198.18.2.1/24", "fd00:b1::1/64"]),
            (
                b,
                "b0",
                &[
                    "198.18.2.2/24",
                    "198.18.2.3/24",
                    "198.18.2.4/24",
                    "fd00:b1::2/64",
                    "fd00:b1::3/64",
                    "fd00:b1::4/64",
                ],
            ),
        ];
        for (ns, dev, cidrs) in addrs {
            for cidr in cidrs {
                let mut args = vec!["-n", ns, "addr", "add", cidr, "dev", dev];
                if cidr.contains(':') {
                    args.push("nodad");
                }
                ip(&args)?;
            }
            // No duplicate address detection: the link-local address is usable
            // at once (a tentative one loses the first IPv6 packets' neighbor
            // resolution for about a second).
            sys::run(sys::netns_command(&netns_path(ns), "sysctl").args([
                "-q",
                "-w",
                &format!("net.ipv6.conf.{dev}.accept_dad=0"),
            ]))?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            // Full checksums on the wire, verified by every receiver.
            sys::run(
                sys::netns_command(&netns_path(ns), "ethtool")
                    .args(["-K", dev, "rx", "off", "tx", "off"]),
            )
            .context("ethtool (install it: cargo xtask setup)")?;
        }
        ip(&["-n", c, "route", "add", "11.0.0.0/8", "via", "198.18.1.1"])?;
        ip(&[
            "-n",
            c,
            "-6",
            "route",
            "add",
            "fd01:c::/64",
            "via",
            "fd00:c1::1",
        ])?;
        ip(&[
            "-n",
            b,
            "route",
            "add",
            "198.18.1.0/24",
            "via",
            "198.18.2.1",
        ])?;
        ip(&[
            "-n",
            b,
            "-6",
            "route",
            "add",
            "fd00:c1::/64",
            "via",
            "fd00:b1::1",
        ])?;
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            sys::run(sys::netns_command(&t.node.netns_path(), "sysctl").args(["-q", "-w", key]))?;
        }
        Ok(t)
    }

    /// NAPI (GRO) on the backends' veth, so frames XDP redirects out of the
    /// node's n1 (`--xdp-forward fib`) are taken: a veth drops XDP frames
    /// unless its peer has NAPI (GRO on, or an XDP program of its own).
    pub fn napi_on_backends(&self) -> Result<()> {
        let b = netns_path(self.backends.netns());
        sys::run(sys::netns_command(&b, "ethtool").args(["-K", "b0", "gro", "on"]))?;
        Ok(())
    }

    /// Runs `cmd` in the node netns (e.g. `iptables`, `nft`), to completion.
    pub fn in_node(&self, program: &str, args: &[&str]) -> Result<String> {
        sys::run(self.node.in_netns(program).args(args))
    }
}

fn netns_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/run/netns").join(name)
}
