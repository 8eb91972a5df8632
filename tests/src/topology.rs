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

    /// Tx checksum offload on at both ends of the client's link (c0, n0), as
    /// a container's veth has it by default: the client's packets reach the
    /// node still marked CHECKSUM_PARTIAL. Receivers still verify (rx off).
    pub fn tx_offload_on_client_link(&self) -> Result<()> {
        for (sb, dev) in [(&self.client, "c0"), (&self.node, NODE_IN)] {
            sys::run(sb.in_netns("ethtool").args(["-K", dev, "tx", "on"]))?;
        }
        Ok(())
    }

    /// A byte sink on port 7100 of the first backend address, IPv4 and IPv6
    /// ([`Topology::upload_mib`] talks to it).
    pub fn spawn_byte_sinks(&mut self) -> Result<()> {
        for addr in [BACKEND_IP4[0], BACKEND_IP6[0]] {
            let mut sink = self.backends.in_netns("/usr/bin/python3");
            sink.args(["-c", SINK_PY, addr]);
            self.backends.spawn(sink)?;
        }
        Ok(())
    }

    /// Sends 1 MiB from the client to `host:port` (a VIP in front of the
    /// byte sinks) and returns the count the sink answered. Retries only
    /// while the connection is refused (the sink not listening yet), 5 s at most.
    pub fn upload_mib(&self, host: &str, port: u16) -> Result<String> {
        for _ in 0..50 {
            let out = self
                .client
                .in_netns("/usr/bin/python3")
                .args(["-c", SEND_PY, host, &port.to_string()])
                .output()?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            let err = String::from_utf8_lossy(&out.stderr);
            anyhow::ensure!(
                err.contains("Refused"),
                "1 MiB to {host}:{port} failed: {err}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        anyhow::bail!("1 MiB to {host}:{port}: still refused after 5 s")
    }

    /// For direct server return: a second link, client (c1, 198.18.3.2,
    /// fd00:d::2) — backends (b1, 198.18.3.3, fd00:d::3), that the backends
    /// now route the client's subnets over, so replies skip the node; and
    /// the backends' side of DSR for `vips` (`deploy/dsr-backend-setup.sh`:
    /// the VIPs on their loopback, ARP for them suppressed).
    pub fn direct_return_link(&self, vips: &[&str]) -> Result<()> {
        let (c, b) = (self.client.netns(), self.backends.netns());
        let ip = |args: &[&str]| sys::run(Command::new("ip").args(args)).map(drop);
        ip(&[
            "-n", c, "link", "add", "c1", "type", "veth", "peer", "name", "b1", "netns", b,
        ])?;
        for (ns, dev, cidrs) in [
            (c, "c1", ["198.18.3.2/24", "fd00:d::2/64"]),
            (b, "b1", ["198.18.3.3/24", "fd00:d::3/64"]),
        ] {
            for cidr in cidrs {
                ip(&["-n", ns, "addr", "add", cidr, "dev", dev, "nodad"]
                    [..if cidr.contains(':') { 8 } else { 7 }])?;
            }
            sys::run(
                sys::netns_command(&netns_path(ns), "ethtool")
                    .args(["-K", dev, "rx", "off", "tx", "off"]),
            )?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&[
            "-n",
            b,
            "route",
            "replace",
            "198.18.1.0/24",
            "via",
            "198.18.3.2",
        ])?;
        ip(&[
            "-n",
            b,
            "-6",
            "route",
            "replace",
            "fd00:c1::/64",
            "via",
            "fd00:d::2",
        ])?;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/dsr-backend-setup.sh");
        sys::run(self.backends.in_netns("sh").arg(script).args(vips))?;
        Ok(())
    }

    /// Runs `cmd` in the node netns (e.g. `iptables`, `nft`), to completion.
    pub fn in_node(&self, program: &str, args: &[&str]) -> Result<String> {
        sys::run(self.node.in_netns(program).args(args))
    }
}

/// Counts bytes until EOF on each connection and answers with the count;
/// exits after 120 s without a connection.
const SINK_PY: &str = "import socket,sys
a=sys.argv[1]
s=socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind((a,7100)); s.listen(8); s.settimeout(120)
while True:
    c,_=s.accept(); c.settimeout(30); n=0
    try:
        while True:
            b=c.recv(65536)
            if not b: break
            n+=len(b)
        c.sendall(str(n).encode())
    except OSError: pass
    c.close()
";

/// Sends 1 MiB, half-closes, prints the byte count the server saw; fails
/// after 10 s without progress.
const SEND_PY: &str = "import socket,sys
h,p=sys.argv[1],int(sys.argv[2])
c=socket.socket(socket.AF_INET6 if ':' in h else socket.AF_INET)
c.settimeout(10); c.connect((h,p))
c.sendall(b'x'*1048576); c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())
";

fn netns_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/run/netns").join(name)
}
