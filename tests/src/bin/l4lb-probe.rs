//! Test client. Every mode is bounded by -n and per-operation timeouts and
//! prints one JSON object on stdout (except `hold`, which is interactive).
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[path = "probe/latency.rs"]
mod latency;
#[path = "probe/requests.rs"]
mod requests;
#[path = "probe/stream.rs"]
mod stream;

#[derive(Parser)]
#[command(
    name = "l4lb-probe",
    about = "Bounded test client for l4lb VIPs and backends"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N sequential connects; each reads the server's id line and closes.
    Tcp {
        #[arg(long)]
        to: SocketAddr,
        #[arg(short = 'n', long = "count", default_value_t = 1)]
        n: usize,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Pace: start a connection every this many ms (0 = back to back), for
        /// steady load while something else happens (bounded by -n).
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Split the -n connections over this many threads, each paced by
        /// --interval-ms: concurrent load, and one stalled connect does not
        /// stop the others.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
        parallel: u32,
        /// Hold each connection this long after reading the id line before
        /// closing it (load that stays open).
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// After the id line, send a line and shut the write side (FIN out,
        /// the socket half-closed), record getpeername then ("peers_half_closed"),
        /// and read the echo (a backend with --reply-delay-ms keeps its side
        /// open meanwhile).
        #[arg(long)]
        half_close: bool,
        /// Start no connection after this many seconds (0: only -n bounds it).
        #[arg(long, default_value_t = 0.0)]
        seconds: f64,
    },
    /// N request/reply datagrams; records who answered and from which address.
    Udp {
        #[arg(long)]
        to: SocketAddr,
        #[arg(short = 'n', long = "count", default_value_t = 1)]
        n: usize,
        #[arg(long, value_enum, default_value_t = Mode::Unconnected)]
        mode: Mode,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Unconnected mode: a new socket per datagram (default: one socket for all).
        #[arg(long)]
        fresh_socket: bool,
    },
    /// Connect, print the id line, then send each stdin line and print its echo.
    Hold {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// N × {connect, send request, read reply, close}; latency percentiles.
    /// With several --to, the targets are interleaved connection by connection
    /// (a paired comparison: machine noise hits every target alike) and the
    /// output is `{"targets": [one object per target]}`.
    Latency {
        #[arg(long, required = true)]
        to: Vec<SocketAddr>,
        #[arg(short = 'n', long = "count", default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 100)]
        warmup: usize,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Request bytes; \n, \r, \t and \\ are unescaped.
        #[arg(long, default_value = "ping\\n")]
        request: String,
        /// Reply is complete after this many newlines (testsrv: greeting + echo = 2; redis PING: 1).
        #[arg(long, default_value_t = 2)]
        lines: usize,
        /// Close with RST (SO_LINGER 0) so long runs leave no TIME_WAIT behind.
        #[arg(long)]
        rst: bool,
        /// Also list each cycle's wall and thread-CPU ns per target (`wall_ns`, `cpu_ns`).
        #[arg(long)]
        per_conn: bool,
        /// The first N targets rotate one place each cycle (every one takes
        /// every position); the others keep theirs at the end.
        #[arg(long, default_value_t = 0)]
        rotate: usize,
    },
    /// Paced connects for a failure curve: connection i starts at i ×
    /// --interval-ms whatever earlier ones are doing, reads the greeting,
    /// closes with RST. Prints `{"origin_ms", "conns": [{"t", "ms", "id"|"err"}]}`
    /// (CLOCK_MONOTONIC ms; `t` from origin_ms).
    Stream {
        #[arg(long)]
        to: SocketAddr,
        #[arg(short = 'n', long = "count", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        n: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        interval_ms: u64,
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=30_000))]
        timeout_ms: u64,
    },
    /// Concurrent request load: --parallel threads, each repeating {connect,
    /// read the greeting, send a line, read its echo, RST close} until -n
    /// requests or --seconds. Prints request latency percentiles (connect to
    /// echo) and the requests each backend (greeting id) answered.
    Requests {
        #[arg(long)]
        to: SocketAddr,
        #[arg(short = 'n', long = "count", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        n: u64,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
        parallel: u32,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// UDP load for `bench xdp`: datagrams from --flows sockets (one source
    /// port each) to --to, as fast as sendmmsg goes, until --count datagrams
    /// or --seconds have passed, whichever comes first. Expects no reply.
    Flood {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
        flows: u16,
        #[arg(short = 'n', long = "count", default_value_t = 100_000_000)]
        n: u64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Payload bytes per datagram.
        #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u16).range(0..=1400))]
        size: u16,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Unconnected,
    Connected,
}

fn main() -> Result<()> {
    let out = match Cli::parse().cmd {
        Cmd::Tcp {
            to,
            n,
            timeout_ms,
            interval_ms,
            parallel,
            hold_ms,
            half_close,
            seconds,
        } => tcp_parallel(
            to,
            n,
            ms(timeout_ms),
            Pace {
                interval: Duration::from_millis(interval_ms),
                hold: Duration::from_millis(hold_ms),
                half_close,
                until: (seconds > 0.0)
                    .then(|| Instant::now() + Duration::from_secs_f64(seconds.min(600.0))),
            },
            parallel as usize,
        ),
        Cmd::Udp {
            to,
            n,
            mode,
            timeout_ms,
            fresh_socket,
        } => udp(to, n, mode, ms(timeout_ms), fresh_socket),
        Cmd::Hold { to, timeout_ms } => return hold(to, ms(timeout_ms)),
        Cmd::Latency {
            to,
            n,
            warmup,
            timeout_ms,
            request,
            lines,
            rst,
            per_conn,
            rotate,
        } => latency::latency(
            to,
            n,
            warmup,
            &latency::Opts {
                timeout: ms(timeout_ms),
                req: unescape(&request).as_bytes(),
                lines,
                rst,
                per_conn,
                rotate,
            },
        ),
        Cmd::Stream {
            to,
            n,
            interval_ms,
            timeout_ms,
        } => stream::stream(to, n as usize, ms(interval_ms), ms(timeout_ms))?,
        Cmd::Requests {
            to,
            n,
            parallel,
            seconds,
            timeout_ms,
        } => requests::requests(
            to,
            n,
            parallel as usize,
            Duration::from_secs_f64(seconds.clamp(0.01, 120.0)),
            ms(timeout_ms),
        ),
        Cmd::Flood {
            to,
            flows,
            n,
            seconds,
            size,
        } => flood(to, flows, n, seconds.clamp(0.01, 120.0), size)?,
    };
    println!("{out}");
    Ok(())
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v.max(1))
}

/// Per-id counts, error kinds and the addresses seen.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    sources: BTreeSet<String>,
    peers: BTreeSet<String>,
    peers_half_closed: BTreeSet<String>,
}

impl Tally {
    fn record(&mut self, r: io::Result<String>) {
        match r {
            Ok(id) => *self.counts.entry(id).or_default() += 1,
            Err(e) => {
                self.errors += 1;
                *self.error_kinds.entry(kind_name(&e)).or_default() += 1;
            }
        }
    }

    fn json(self) -> Value {
        json!({
            "counts": self.counts,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "sources": self.sources,
            "peers": self.peers,
            "peers_half_closed": self.peers_half_closed,
        })
    }
}

/// io::ErrorKind's name (ENETUNREACH → "NetworkUnreachable"); a receive
/// timeout (EAGAIN) is reported as "TimedOut".
fn kind_name(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock => "TimedOut".into(),
        k => format!("{k:?}"),
    }
}

fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

/// How `tcp` spaces its connections: start one every `interval`, keep each
/// open `hold` after its id line (half-closed first with `half_close`),
/// start none after `until`.
#[derive(Clone, Copy)]
struct Pace {
    interval: Duration,
    hold: Duration,
    half_close: bool,
    until: Option<Instant>,
}

/// `tcp` on `parallel` threads (n split between them), tallies merged.
fn tcp_parallel(to: SocketAddr, n: usize, t: Duration, pace: Pace, parallel: usize) -> Value {
    let handles: Vec<_> = (0..parallel)
        .map(|i| {
            let share = n / parallel + usize::from(i < n % parallel);
            std::thread::spawn(move || tcp(to, share, t, pace))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let Ok(tally) = h.join() else { continue };
        for (id, c) in tally.counts {
            *all.counts.entry(id).or_default() += c;
        }
        for (k, c) in tally.error_kinds {
            *all.error_kinds.entry(k).or_default() += c;
        }
        all.errors += tally.errors;
        all.peers.extend(tally.peers);
        all.peers_half_closed.extend(tally.peers_half_closed);
    }
    all.json()
}

fn tcp(to: SocketAddr, n: usize, t: Duration, pace: Pace) -> Tally {
    let mut tally = Tally::default();
    let start = Instant::now();
    for i in 0..n {
        if !pace.interval.is_zero() {
            let due = start + pace.interval * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        if pace.until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let r = (|| {
            let s = TcpStream::connect_timeout(&to, t)?;
            tally.peers.insert(s.peer_addr()?.to_string());
            s.set_read_timeout(Some(t))?;
            let mut r = BufReader::new(&s);
            let mut line = String::new();
            r.read_line(&mut line)?;
            let id = match line.strip_suffix('\n') {
                Some(id) => id.to_string(),
                None => return Err(eof("no id line")),
            };
            if pace.half_close {
                tally
                    .peers_half_closed
                    .insert(half_closed_peer(&s, &mut r)?);
            }
            std::thread::sleep(pace.hold);
            Ok(id)
        })();
        tally.record(r);
    }
    tally
}

/// Sends a line, shuts the write side, and returns the peer address seen
/// then, once the line's echo came back.
fn half_closed_peer(s: &TcpStream, r: &mut BufReader<&TcpStream>) -> io::Result<String> {
    let mut w = s;
    w.write_all(b"half\n")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let peer = s.peer_addr()?.to_string();
    let mut echo = String::new();
    r.read_line(&mut echo)?;
    if echo != "half\n" {
        return Err(eof("no echo after the half-close"));
    }
    Ok(peer)
}

fn udp(to: SocketAddr, n: usize, mode: Mode, t: Duration, fresh_socket: bool) -> Value {
    let mut tally = Tally::default();
    let mut shared: Option<UdpSocket> = None;
    let mut buf = vec![0u8; 65536];
    for i in 0..n {
        let payload = format!("probe-{}-{i}", std::process::id());
        let r = (|| {
            let sock = match (mode, fresh_socket, shared.take()) {
                (Mode::Unconnected, false, Some(s)) => s,
                _ => UdpSocket::bind(any_addr(to))?,
            };
            match mode {
                Mode::Unconnected => {
                    sock.send_to(payload.as_bytes(), to)?;
                }
                Mode::Connected => {
                    sock.connect(to)?;
                    tally.peers.insert(sock.peer_addr()?.to_string());
                    sock.send(payload.as_bytes())?;
                }
            }
            let r = recv_reply(&sock, &payload, &mut buf, t);
            if !fresh_socket {
                shared = Some(sock);
            }
            let (id, src) = r?;
            tally.sources.insert(src.to_string());
            Ok(id)
        })();
        tally.record(r);
    }
    let mut v = tally.json();
    v["mode"] = json!(match mode {
        Mode::Unconnected => "unconnected",
        Mode::Connected => "connected",
    });
    v
}

/// Waits for `ID <payload>`, skipping late replies to earlier datagrams.
fn recv_reply(
    sock: &UdpSocket,
    payload: &str,
    buf: &mut [u8],
    t: Duration,
) -> io::Result<(String, SocketAddr)> {
    let deadline = Instant::now() + t;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        sock.set_read_timeout(Some(left))?;
        let (len, src) = sock.recv_from(buf)?;
        let reply = String::from_utf8_lossy(&buf[..len]);
        if let Some((id, rest)) = reply.split_once(' ')
            && rest == payload
        {
            return Ok((id.to_string(), src));
        }
    }
}

fn any_addr(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
    }
}

fn hold(to: SocketAddr, t: Duration) -> Result<()> {
    let s = TcpStream::connect_timeout(&to, t).with_context(|| format!("connecting to {to}"))?;
    s.set_read_timeout(Some(t))?;
    let mut r = BufReader::new(&s);
    let mut w = &s;
    let mut out = io::stdout().lock();
    let mut line = String::new();
    r.read_line(&mut line).context("reading id line")?;
    anyhow::ensure!(line.ends_with('\n'), "connection closed before the id line");
    write!(out, "{line}")?;
    out.flush()?;
    for input in io::stdin().lock().lines() {
        w.write_all(format!("{}\n", input?).as_bytes())
            .context("sending")?;
        line.clear();
        r.read_line(&mut line).context("reading echo")?;
        anyhow::ensure!(line.ends_with('\n'), "connection closed");
        write!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// Bounded UDP flood (see `Cmd::Flood`): sendmmsg batches of 64 over the
/// flows' connected sockets, round robin. Prints what was sent and how fast.
fn flood(to: SocketAddr, flows: u16, n: u64, seconds: f64, size: u16) -> Result<Value> {
    const BATCH: usize = 64;
    let socks: Vec<UdpSocket> = (0..flows)
        .map(|_| {
            let s = UdpSocket::bind(any_addr(to))?;
            s.connect(to)?;
            Ok(s)
        })
        .collect::<io::Result<_>>()
        .context("opening the flood sockets")?;
    let payload = vec![0x5au8; usize::from(size)];
    let mut iov = [libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    }];
    // SAFETY: plain C structs; every pointer in them points at `iov`, which outlives the calls.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov.as_mut_ptr();
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let (start, limit) = (Instant::now(), Duration::from_secs_f64(seconds));
    let (mut sent, mut errors, mut i) = (0u64, 0u64, 0usize);
    while sent < n && start.elapsed() < limit {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socks[i % socks.len()]);
        i += 1;
        let want = (n - sent).min(BATCH as u64) as libc::c_uint;
        // SAFETY: `msgs` holds `BATCH` >= `want` initialized headers.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), want, 0) };
        if r < 0 {
            // ENOBUFS/EAGAIN under load: count and go on (bounded by time).
            errors += 1;
        } else {
            sent += r as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(
        json!({ "sent": sent, "send_errors": errors, "seconds": elapsed, "pps": sent as f64 / elapsed }),
    )
}
