//! The wire between simulated nodes: a Linux bridge `br0` in a namespace of
//! its own (the "fabric", never the host's), one veth per node (`v<i>` on
//! the bridge, `eth0` in the node). Addresses come from 198.19.0.0/16
//! (RFC 2544 benchmarking space) and fd00:19::/64 and exist only on these
//! links; no namespace has a default route, so nothing leaves.
//!
//! ```text
//!   node 0 (eth0 198.19.1.1) ──┐
//!   node 1 (eth0 198.19.1.2) ──┼── v<i> ── br0 198.19.0.1 (fabric: fake Marathon)
//!   node i (eth0 198.19.1.i+1)─┘
//! ```
use std::{path::PathBuf, process::Command};

use anyhow::{Result, bail};

use crate::{sandbox::Sandbox, sys};

/// The fabric's own address on `br0`, where the shared fake Marathon listens.
pub const FABRIC_IP4: &str = "198.19.0.1";
pub const FABRIC_IP6: &str = "fd00:19::1";
/// The node side of each node's link.
pub const NODE_DEV: &str = "eth0";
/// Node addresses are 198.19.1.1 ..= 198.19.1.MAX_NODES.
pub const MAX_NODES: usize = 250;

/// Node `i`'s IPv4 address on the fabric.
pub fn node_ip4(i: usize) -> String {
    format!("198.19.1.{}", i + 1)
}

/// Node `i`'s IPv6 address on the fabric.
pub fn node_ip6(i: usize) -> String {
    format!("fd00:19::1:{:x}", i + 1)
}

/// The fabric end of node `i`'s link (in the fabric namespace).
pub fn port_dev(i: usize) -> String {
    format!("v{i}")
}

pub struct Fabric {
    pub sb: Sandbox,
}

impl Fabric {
    /// A fresh namespace with `br0` up and the fabric's addresses on it.
    pub fn new(tag: &str) -> Result<Fabric> {
        let f = Fabric {
            sb: Sandbox::new(&format!("{tag}-fab"))?,
        };
        f.ip(&["link", "add", "br0", "type", "bridge"])?;
        f.ip(&["addr", "add", &format!("{FABRIC_IP4}/16"), "dev", "br0"])?;
        f.ip(&[
            "addr",
            "add",
            &format!("{FABRIC_IP6}/64"),
            "dev",
            "br0",
            "nodad",
        ])?;
        f.ip(&["link", "set", "br0", "up"])?;
        Ok(f)
    }

    /// Wires `node` (its netns) to the bridge as node `i`: the veth pair,
    /// its addresses, both ends up.
    pub fn attach(&self, node: &Sandbox, i: usize) -> Result<()> {
        if i >= MAX_NODES {
            bail!("node {i}: at most {MAX_NODES} nodes");
        }
        let port = port_dev(i);
        let ns = node.netns();
        self.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", NODE_DEV, "netns", ns,
        ])?;
        self.ip(&["link", "set", &port, "master", "br0", "up"])?;
        let node_ip = |args: &[&str]| sys::run(Command::new("ip").arg("-n").arg(ns).args(args));
        node_ip(&[
            "addr",
            "add",
            &format!("{}/16", node_ip4(i)),
            "dev",
            NODE_DEV,
        ])?;
        node_ip(&[
            "addr",
            "add",
            &format!("{}/64", node_ip6(i)),
            "dev",
            NODE_DEV,
            "nodad",
        ])?;
        node_ip(&["link", "set", NODE_DEV, "up"])?;
        Ok(())
    }

    /// Node `i`'s link up or down, on the bridge side: the node keeps its
    /// address and routes, frames to and from it are simply not carried.
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.ip(&["link", "set", &port_dev(i), state])
    }

    pub fn netns_path(&self) -> PathBuf {
        self.sb.netns_path()
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        sys::run(Command::new("ip").arg("-n").arg(self.sb.netns()).args(args)).map(drop)
    }
}
