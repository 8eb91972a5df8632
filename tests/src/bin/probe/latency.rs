//! `l4lb-probe latency`: N × {connect, send request, read reply, close} per
//! target, targets interleaved connection by connection. With `--per-conn`,
//! each target's object also lists every cycle's wall time and the probe
//! thread's CPU time for that connection (`wall_ns`, `cpu_ns`; 0 where the
//! connection failed), aligned by cycle, so a caller can pair targets within
//! one cycle and tell time spent on this CPU (syscalls, the hooks, netfilter
//! and loopback softirqs, which run in the sender's context) from time spent
//! waiting (the backend, wake-ups).
use std::{
    io::{self, Read, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use socket2::{Domain, SockAddr, Socket, Type};

use super::{Tally, eof};

/// How each connection runs.
pub struct Opts<'a> {
    pub timeout: Duration,
    pub req: &'a [u8],
    pub lines: usize,
    pub rst: bool,
    pub per_conn: bool,
    /// The first `rotate` targets start one place later each cycle (the
    /// rest keep their place at the end), so within one run every one of
    /// them takes every position and position effects average out.
    pub rotate: usize,
}

pub fn latency(to: Vec<SocketAddr>, n: usize, warmup: usize, o: &Opts) -> Value {
    let addrs: Vec<(SockAddr, Domain)> = to
        .iter()
        .map(|a| (SockAddr::from(*a), Domain::for_address(*a)))
        .collect();
    let mut buf = [0u8; 4096];
    let mut errors: Vec<Tally> = to.iter().map(|_| Tally::default()).collect();
    for _ in 0..warmup {
        for (addr, domain) in &addrs {
            let _ = round_trip(addr, *domain, o, &mut buf);
        }
    }
    let mut samples: Vec<Vec<u64>> = to.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut cycles: Vec<Cycles> = to.iter().map(|_| Cycles::new(o.per_conn, n)).collect();
    let start = Instant::now();
    let rotate = o.rotate.min(addrs.len());
    for c in 0..n {
        for j in 0..addrs.len() {
            let i = target_at(j, c, rotate);
            let (addr, domain) = &addrs[i];
            let cpu0 = o.per_conn.then(thread_cpu_ns);
            let t0 = Instant::now();
            let r = round_trip(addr, *domain, o, &mut buf);
            let wall = t0.elapsed().as_nanos() as u64;
            let cpu = cpu0.map_or(0, |c| thread_cpu_ns().saturating_sub(c));
            match r {
                Ok(()) => {
                    samples[i].push(wall);
                    cycles[i].push(wall, cpu);
                }
                Err(e) => {
                    errors[i].record(Err(e));
                    cycles[i].push(0, 0);
                }
            }
        }
    }
    // Wall time is shared; each target's rate is its own connections over the
    // time spent on them (the sum of its samples).
    let wall = start.elapsed().as_secs_f64();
    let mut out: Vec<Value> = Vec::new();
    for (((target, mut samples), errors), cycles) in to.iter().zip(samples).zip(errors).zip(cycles)
    {
        let mut v = latency_stats(
            target,
            n,
            &mut samples,
            &errors,
            if addrs.len() == 1 { Some(wall) } else { None },
        );
        cycles.add_to(&mut v);
        out.push(v);
    }
    if out.len() == 1 {
        out.pop().unwrap_or_default()
    } else {
        json!({ "targets": out })
    }
}

/// Which target runs at position `j` of cycle `c`: the first `rotate`
/// targets move one place per cycle, the others stay.
fn target_at(j: usize, c: usize, rotate: usize) -> usize {
    if j < rotate { (j + c) % rotate } else { j }
}

/// One target's per-cycle wall and CPU times (only with `--per-conn`).
struct Cycles {
    on: bool,
    wall_ns: Vec<u64>,
    cpu_ns: Vec<u64>,
}

impl Cycles {
    fn new(on: bool, n: usize) -> Cycles {
        let cap = if on { n } else { 0 };
        Cycles {
            on,
            wall_ns: Vec::with_capacity(cap),
            cpu_ns: Vec::with_capacity(cap),
        }
    }

    fn push(&mut self, wall: u64, cpu: u64) {
        if self.on {
            self.wall_ns.push(wall);
            self.cpu_ns.push(cpu);
        }
    }

    fn add_to(self, v: &mut Value) {
        if self.on {
            v["wall_ns"] = json!(self.wall_ns);
            v["cpu_ns"] = json!(self.cpu_ns);
        }
    }
}

/// This thread's CPU time (user + system, including softirqs run in its
/// context when the kernel has no IRQ time accounting), ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn latency_stats(
    to: &SocketAddr,
    n: usize,
    samples: &mut [u64],
    errors: &Tally,
    wall: Option<f64>,
) -> Value {
    samples.sort_unstable();
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    // Nearest-rank percentile.
    let pct = |p: f64| match samples.len() {
        0 => 0.0,
        len => us(samples[((p / 100.0 * len as f64).ceil() as usize).clamp(1, len) - 1]),
    };
    let total_ns: u64 = samples.iter().sum();
    let mean = if samples.is_empty() {
        0.0
    } else {
        us(total_ns / samples.len() as u64)
    };
    let busy = wall.unwrap_or(total_ns as f64 / 1e9);
    json!({
        "to": to.to_string(),
        "n": n,
        "ok": samples.len(),
        "errors": errors.errors,
        "error_kinds": errors.error_kinds,
        "min_us": samples.first().map_or(0.0, |&v| us(v)),
        "p50_us": pct(50.0),
        "p90_us": pct(90.0),
        "p99_us": pct(99.0),
        "max_us": samples.last().map_or(0.0, |&v| us(v)),
        "mean_us": mean,
        "conns_per_sec": if busy > 0.0 { (samples.len() as f64 / busy).round() } else { 0.0 },
        "wall_s": busy,
    })
}

/// One connection: blocking connect bounded by SO_SNDTIMEO (fewer syscalls
/// than a non-blocking connect + poll), one write, reads until `lines` newlines.
fn round_trip(addr: &SockAddr, domain: Domain, o: &Opts, buf: &mut [u8]) -> io::Result<()> {
    let (t, req, lines, rst) = (o.timeout, o.req, o.lines, o.rst);
    let s = Socket::new(domain, Type::STREAM, None)?;
    s.set_write_timeout(Some(t))?;
    s.set_read_timeout(Some(t))?;
    s.connect(addr)?;
    (&s).write_all(req)?;
    let mut seen = 0;
    while seen < lines {
        let got = (&s).read(buf)?;
        if got == 0 {
            return Err(eof("closed before the full reply"));
        }
        seen += buf[..got].iter().filter(|&&b| b == b'\n').count();
    }
    if rst {
        s.set_linger(Some(Duration::ZERO))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::target_at;

    #[test]
    fn the_rotated_targets_take_every_position_and_the_rest_stay() {
        let cycle = |c| (0..5).map(|j| target_at(j, c, 3)).collect::<Vec<_>>();
        assert_eq!(cycle(0), [0, 1, 2, 3, 4]);
        assert_eq!(cycle(1), [1, 2, 0, 3, 4]);
        assert_eq!(cycle(2), [2, 0, 1, 3, 4]);
        assert_eq!(cycle(3), cycle(0));
        // No rotation: the given order every cycle.
        assert_eq!(target_at(1, 7, 0), 1);
    }
}
