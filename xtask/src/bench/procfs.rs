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

/// Machine-wide CPU time spent over a span (/proc/stat's `cpu` line, all
/// CPUs) in softirq, where the kernel receives, forwards and drops packets,
/// XDP and netfilter alike.
/// The kernel samples these by tick, so spans of seconds are needed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuDelta {
    pub softirq_s: f64,
    pub wall_s: f64,
}

impl CpuDelta {
    /// Runs `f` and returns the CPU time the machine spent meanwhile.
    pub(crate) fn over<T>(f: impl FnOnce() -> T) -> Result<(CpuDelta, T)> {
        let (a, t0) = (proc_stat_cpu()?, std::time::Instant::now());
        let out = f();
        let (b, wall_s) = (proc_stat_cpu()?, t0.elapsed().as_secs_f64());
        let d = CpuDelta {
            softirq_s: b.softirq_s - a.softirq_s,
            wall_s,
        };
        Ok((d, out))
    }
}

/// Cumulative softirq seconds since boot, summed over CPUs.
fn proc_stat_cpu() -> Result<CpuDelta> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_proc_stat_cpu(&stat)
}

fn parse_proc_stat_cpu(stat: &str) -> Result<CpuDelta> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<f64>())
        .collect::<Result<_, _>>()
        .context("a non-number in /proc/stat's cpu line")?;
    // user nice system idle iowait irq softirq steal ...
    if f.len() < 8 {
        anyhow::bail!("short cpu line in /proc/stat: {line:?}");
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(CpuDelta {
        softirq_s: f[6] / hz,
        wall_s: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_line_gives_softirq() {
        let stat = "cpu  300 20 60 900 10 0 16 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let c = parse_proc_stat_cpu(stat).unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(c.softirq_s, 16.0 / hz);
        assert!(parse_proc_stat_cpu("cpu  1 2 3\n").is_err());
        assert!(parse_proc_stat_cpu("intr 5\n").is_err());
    }
}
