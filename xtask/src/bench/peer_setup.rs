//! The five ways to one backend that `bench peers` and `bench churn` compare,
//! set up in a sandbox: direct, the l4lb VIP (connect4 hook), iptables
//! (legacy xtables) DNAT, nftables DNAT and HAProxy `mode tcp`.
//!
//! The netfilter VIPs are local addresses of the netns' `lo` (so without a
//! rule a connect is refused, never sent anywhere) and differ from the l4lb
//! VIP, which no rule matches: each target uses only its own mechanism. The
//! NAT tables exist in the netns, so conntrack tracks every connection there
//! (direct and l4lb included), as on a node where kube-proxy or Docker runs.
//! HAProxy is a child of the sandbox and every rule lives in its netns.
use std::{process::Command, time::Duration};

use anyhow::{Context, Result};
use l4lb_tests::{Agent, Sandbox};

use super::common::{run_in, wait_tcp};

pub const BACKEND: &str = "127.0.0.2:7000";
pub const L4LB_VIP: &str = "11.0.0.9:7000";
pub const IPT_ADDR: &str = "11.0.1.1";
pub const NFT_ADDR: &str = "11.0.1.2";
pub const HAPROXY: &str = "127.0.0.3:7000";
pub const PORT: &str = "7000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Direct,
    L4lb,
    Iptables,
    Nftables,
    Haproxy,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Direct,
        Target::L4lb,
        Target::Iptables,
        Target::Nftables,
        Target::Haproxy,
    ];

    pub fn addr(self) -> String {
        match self {
            Target::Direct => BACKEND.into(),
            Target::L4lb => L4LB_VIP.into(),
            Target::Iptables => format!("{IPT_ADDR}:{PORT}"),
            Target::Nftables => format!("{NFT_ADDR}:{PORT}"),
            Target::Haproxy => HAPROXY.into(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::L4lb => "l4lb socket LB (connect4 hook)",
            Target::Iptables => "iptables DNAT (legacy xtables, nat OUTPUT)",
            Target::Nftables => "nftables DNAT (nat hook output)",
            Target::Haproxy => "HAProxy 2.6 (mode tcp, userspace proxy)",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::L4lb => "l4lb",
            Target::Iptables => "iptables",
            Target::Nftables => "nftables",
            Target::Haproxy => "HAProxy",
        }
    }
}

/// The setup in words, for the reports.
pub fn setup_text() -> String {
    format!(
        "iptables `iptables-legacy -t nat -A OUTPUT -d {IPT_ADDR}/32 -p tcp --dport {PORT} -j DNAT \
         --to-destination {BACKEND}`; nftables `table ip l4lb_bench {{ chain out {{ type nat hook output priority \
         -100; ip daddr {NFT_ADDR} tcp dport {PORT} counter dnat to {BACKEND} }} }}`; HAProxy `mode tcp`, \
         `bind {HAPROXY}`, `server b1 {BACKEND}` (`haproxy -db`, default threads)"
    )
}

/// What is running: the agent and HAProxy's pid. Stop with [`Running::stop`].
pub struct Running {
    pub agent: Agent,
    hp_pid: u32,
}

impl Running {
    /// Stops the agent (SIGTERM + teardown) and HAProxy.
    pub fn stop(mut self, sb: &mut Sandbox) -> Result<()> {
        let stopped = self.agent.stop();
        let _ = sb.kill(self.hp_pid);
        stopped
    }
}

fn haproxy_config() -> String {
    // One process, default thread count (= CPUs), plain TCP forwarding; the
    // timeouts bound every connection.
    format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\n\
         frontend bench\n  bind {HAPROXY}\n  default_backend backend1\n\n\
         backend backend1\n  server b1 {BACKEND}\n"
    )
}

fn nft_rules() -> String {
    format!(
        "table ip l4lb_bench {{\n  chain out {{\n    type nat hook output priority -100; policy accept;\n    \
         ip daddr {NFT_ADDR} tcp dport {PORT} counter dnat to {BACKEND}\n  }}\n}}\n"
    )
}

/// The backend, the netfilter rules, HAProxy and the agent (with the l4lb
/// VIP in force), all in `sb`.
pub fn start(sb: &mut Sandbox) -> Result<Running> {
    sb.spawn_testsrv("b1", &[BACKEND], &[])?;
    // Netfilter VIPs: local addresses (refused without a rule), not the l4lb VIP.
    for addr in [IPT_ADDR, NFT_ADDR] {
        sb.add_addr(&format!("{addr}/32"))?;
    }
    run_in(
        sb.in_netns("iptables-legacy").args([
            "-w",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            &format!("{IPT_ADDR}/32"),
            "-p",
            "tcp",
            "--dport",
            PORT,
            "-j",
            "DNAT",
            "--to-destination",
            BACKEND,
        ]),
        "iptables-legacy -t nat -A OUTPUT",
    )?;
    let nft = sb.workdir().join("bench.nft");
    std::fs::write(&nft, nft_rules())?;
    run_in(sb.in_netns("nft").arg("-f").arg(&nft), "nft -f")?;
    let cfg = sb.workdir().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config())?;
    run_in(
        Command::new("haproxy")
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(&cfg),
        "haproxy -c",
    )?;
    let mut hp = sb.in_netns("haproxy");
    // -db: foreground, no daemon: a child of the sandbox, killed with it.
    hp.arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(sb.workdir().join("haproxy.log"))?);
    let hp_pid = sb.spawn(hp)?;
    wait_tcp(sb, HAPROXY, Duration::from_secs(10)).context("haproxy")?;

    let yaml =
        format!("vips:\n  - vip: {L4LB_VIP}\n    protocol: tcp\n    backends: [\"{BACKEND}\"]\n");
    let agent = Agent::start(sb, &yaml)?;
    let running = Running { agent, hp_pid };
    if let Err(e) = running.agent.wait_vips(1, Duration::from_secs(30)) {
        let _ = running.stop(sb);
        return Err(e);
    }
    Ok(running)
}

/// Packets counted by the iptables DNAT rule and the nft rule's counter: for
/// a NAT rule, one per new connection.
pub fn netfilter_counts(sb: &Sandbox) -> Result<(u64, u64)> {
    let ipt = run_in(
        sb.in_netns("iptables-legacy")
            .args(["-w", "-t", "nat", "-L", "OUTPUT", "-v", "-x", "-n"]),
        "iptables-legacy -L",
    )?;
    let ipt_n = ipt
        .lines()
        .find(|l| l.contains("DNAT"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .context("no DNAT rule line")?;
    let nft = run_in(
        sb.in_netns("nft")
            .args(["list", "table", "ip", "l4lb_bench"]),
        "nft list",
    )?;
    let nft_n = nft
        .split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .context("no nft counter")?;
    Ok((ipt_n, nft_n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_only_their_vips() {
        let n = nft_rules();
        assert!(n.contains("ip daddr 11.0.1.2 tcp dport 7000") && !n.contains("11.0.0.9"));
        let h = haproxy_config();
        assert!(h.contains("bind 127.0.0.3:7000") && h.contains("server b1 127.0.0.2:7000"));
    }
}
