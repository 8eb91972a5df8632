//! Readers of kernel files the benchmarks sample around a run: a process's
//! memory and CPU time (/proc/PID), a cgroup's CPU time, and the network
//! stack's drop counters (/proc/net, read inside the sandbox's netns).
use std::{fs, path::Path, time::Duration};

use anyhow::{Context, Result};
use l4lb_tests::Sandbox;

use crate::util;

/// A `kB` field of /proc/PID/status, in MB (10^6 bytes).
pub(crate) fn status_mb(pid: u32, key: &str) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: f64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024.0 / 1e6)
    })
}

/// utime + stime of every thread of PID, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = &s[s.rfind(')').context("no ) in stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field =
        |i: usize| -> Result<f64> { Ok(f.get(i).context("short /proc/PID/stat")?.parse()?) };
    let (ut, st) = (field(11)?, field(12)?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ut + st) / hz)
}

/// Packets the kernel's per-CPU input backlogs dropped, machine-wide
/// (/proc/net/softnet_stat column 2): loopback traffic goes through them, so
/// other load on the box can drop our queries there.
pub(crate) fn backlog_drops() -> u64 {
    fs::read_to_string("/proc/net/softnet_stat")
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|h| u64::from_str_radix(h, 16).ok())
                .sum()
        })
        .unwrap_or(0)
}

/// UDP `RcvbufErrors` of the sandbox netns (/proc/net/snmp read from inside
/// it): datagrams dropped because a socket's receive buffer was full.
pub(crate) fn udp_rcvbuf_errors(sb: &Sandbox) -> Result<u64> {
    let out = util::output_timeout(
        sb.in_netns("cat").arg("/proc/net/snmp"),
        Duration::from_secs(5),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (
        udp.next().context("no Udp: in snmp")?,
        udp.next().context("no Udp: values")?,
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .context("no RcvbufErrors")?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .context("short Udp: line")?
        .parse()?)
}

/// `drops` of the UDP sockets bound to local `port` (/proc/net/udp in the
/// sandbox netns).
pub(crate) fn udp_socket_drops(sb: &Sandbox, port: u16) -> Result<u64> {
    let out = util::output_timeout(
        sb.in_netns("cat").arg("/proc/net/udp"),
        Duration::from_secs(5),
    )?;
    let suffix = format!(":{port:04X}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&suffix))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum())
}

/// usage_usec of a cgroup's cpu.stat, seconds.
pub(crate) fn cgroup_cpu_s(cg: &Path) -> Result<f64> {
    let stat = std::fs::read_to_string(cg.join("cpu.stat"))?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|us| us / 1e6)
        .context("no usage_usec in cpu.stat")
}
