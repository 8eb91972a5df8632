//! The agent's DNS server under abuse, with Debian's dig as the honest
//! client, all inside the sandbox netns: a crowd of idle TCP connections, a
//! TCP message cut short, a UDP flood from one prefix, forwarding asked for
//! by a client outside `--dns-allow`. Raw clients run on a thread that
//! entered the netns (setns), so their sockets live there too.
use std::{
    fs::File,
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{Agent, Sandbox, require_root};
use socket2::{Domain, SockAddr, Socket, Type};

const BOUND: Duration = Duration::from_secs(10);
const DNS: &str = "127.0.0.1:5353";
const VIP_NAME: &str = "redis.marathon.l4lb.thisdcos.directory";
const CONFIG: &str = "vips:\n  - name: /redis:6379\n    backends: [127.0.0.2:6379]\n";

fn start(sb: &mut Sandbox, extra: &[&str]) -> Agent {
    let mut args = vec!["--dns-listen", DNS];
    args.extend_from_slice(extra);
    let agent = Agent::start_with_args(sb, CONFIG, &args).unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    // The name is published once the maps hold the VIP.
    sb.wait_dig(&[VIP_NAME], "the VIP's name", BOUND, |o| {
        o.contains("ANSWER: 1")
    });
    agent
}

/// Runs `f` on a thread inside the sandbox's netns.
fn in_netns<T: Send + 'static>(sb: &Sandbox, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = sb.netns_path();
    thread::spawn(move || {
        let ns = File::open(&path).unwrap();
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn tcp_from(src: &str) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SockAddr::from(SocketAddr::new(src.parse().unwrap(), 0)))?;
    let to: SocketAddr = DNS.parse().unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// A DNS query for `name` type A, id 0x4242, RD set.
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The value of one series of the agent's /metrics (0 when absent).
fn metric(sb: &Sandbox, series: &str) -> u64 {
    let (code, body) = sb.agent_http("/metrics");
    assert_eq!(code, "200", "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn tcp_is_answered_despite_300_idle_connections() {
    require_root();
    let mut sb = Sandbox::new("dns-tcp-crowd").unwrap();
    let _agent = start(&mut sb, &[]);
    // 300 idle connections from 20 clients (15 each, under the per-client
    // cap), more than the 256 connections a listener keeps.
    let crowd: Vec<TcpStream> = in_netns(&sb, || {
        (0..300)
            .map(|i| tcp_from(&format!("127.0.1.{}", i % 20 + 1)).unwrap())
            .collect()
    });
    thread::sleep(Duration::from_millis(300));
    for src in ["127.0.0.1", "127.0.1.1"] {
        let t0 = Instant::now();
        let out = sb.dig(&["+tcp", "-b", src, VIP_NAME]);
        assert!(out.contains("ANSWER: 1"), "from {src}:\n{out}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
    let evicted = metric(&sb, "l4lb_dns_tcp_closed_total{reason=\"evicted\"}");
    assert!(evicted >= 300 - 256, "{evicted} evicted");
    drop(crowd);
}

#[test]
fn tcp_message_cut_short_is_not_answered() {
    require_root();
    let mut sb = Sandbox::new("dns-tcp-cut").unwrap();
    let _agent = start(&mut sb, &[]);
    let got = in_netns(&sb, || {
        let q = query(VIP_NAME);
        let mut s = tcp_from("127.0.0.1").unwrap();
        s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        // The question's type and class never come; our side is closed
        // (a half-close: a reply could still be read).
        s.write_all(&q[..q.len() - 4]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = Vec::new();
        match s.read_to_end(&mut reply) {
            Ok(_) => reply.len(),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => reply.len(),
            Err(e) => panic!("not closed: {e}"),
        }
    });
    assert_eq!(got, 0, "a cut message was answered");
    assert_eq!(
        metric(&sb, "l4lb_dns_tcp_closed_total{reason=\"incomplete\"}"),
        1
    );
    // The whole message is answered.
    assert!(sb.dig(&["+tcp", VIP_NAME]).contains("ANSWER: 1"));
}

#[test]
fn udp_flood_from_one_prefix_is_rate_limited() {
    require_root();
    let mut sb = Sandbox::new("dns-rrl").unwrap();
    sb.add_addr("198.18.0.1/32").unwrap();
    sb.add_addr("198.18.1.1/32").unwrap();
    let _agent = start(&mut sb, &[]);
    // 1000 queries at once from 198.18.0.1 (default limit: 100/s per /24,
    // every other dropped answer slips as TC).
    let (full, tc, secs) = in_netns(&sb, || {
        let s = UdpSocket::bind("198.18.0.1:0").unwrap();
        // Room for every answer and slip of the burst: with the default
        // receive buffer a loaded machine dropped slips at the client.
        force_rcvbuf(&s, 8 << 20);
        let q = query(VIP_NAME);
        let t0 = Instant::now();
        for _ in 0..1000 {
            s.send_to(&q, DNS).unwrap();
        }
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let (mut full, mut tc) = (0u64, 0u64);
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.recv(&mut buf) {
            assert!(n >= 12);
            if buf[2] & 0x02 != 0 {
                assert!(n <= q.len(), "a slip is no larger than the query");
                tc += 1;
            } else {
                full += 1;
            }
        }
        (full, tc, t0.elapsed().as_secs_f64())
    });
    let refill = (secs * 100.0).ceil() as u64;
    assert!(
        (100..=100 + refill).contains(&full),
        "{full} answers in {secs:.2} s"
    );
    assert!(
        tc.abs_diff((1000 - full) / 2) <= 1,
        "{tc} slips, {full} answers"
    );
    let dropped = metric(&sb, "l4lb_dns_rrl_total{action=\"dropped\"}");
    let slipped = metric(&sb, "l4lb_dns_rrl_total{action=\"slipped\"}");
    assert_eq!((dropped + slipped, slipped), (1000 - full, tc));
    // Another prefix, and loopback, are still answered.
    for src in ["198.18.1.1", "127.0.0.1"] {
        let out = sb.dig(&["-b", src, VIP_NAME]);
        assert!(
            out.contains("ANSWER: 1") && !out.contains(" tc"),
            "from {src}:\n{out}"
        );
    }
}

/// An upstream in the netns on 127.0.0.53:5300 answering every query with
/// `A 198.18.9.9`, until `stop` is set.
fn stub_upstream(sb: &Sandbox, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let sock = in_netns(sb, || UdpSocket::bind("127.0.0.53:5300").unwrap());
    thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 {
                continue;
            }
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80; // QR
            r[3] = 0x80; // RA, NOERROR
            r[6..8].copy_from_slice(&[0, 1]); // one answer
            r[10..12].copy_from_slice(&[0, 0]); // no additional (drops OPT)
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 198, 18, 9, 9]);
            let _ = sock.send_to(&r, peer);
        }
    })
}

#[test]
fn forwarding_only_for_allowed_clients() {
    require_root();
    let mut sb = Sandbox::new("dns-allow").unwrap();
    sb.add_addr("198.18.0.1/32").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stub = stub_upstream(&sb, stop.clone());
    let _agent = start(&mut sb, &["--dns-upstream", "127.0.0.53:5300"]);
    // Loopback (the default --dns-allow) is forwarded for.
    let out = sb.dig(&["+noedns", "example.com"]);
    assert!(out.contains("198.18.9.9"), "{out}");
    // Another client is not, but our zones answer it.
    let out = sb.dig(&["+noedns", "-b", "198.18.0.1", "example.com"]);
    assert!(
        out.contains("status: REFUSED") && !out.contains("198.18.9.9"),
        "{out}"
    );
    let out = sb.dig(&["-b", "198.18.0.1", VIP_NAME]);
    assert!(out.contains("ANSWER: 1"), "{out}");
    stop.store(true, Ordering::Relaxed);
    stub.join().unwrap();
}

/// SO_RCVBUFFORCE (root): a receive buffer past net.core.rmem_max.
fn force_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: a valid socket fd and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

#[test]
fn repeated_udp_questions_are_answered_from_the_reply_cache() {
    require_root();
    let mut sb = Sandbox::new("dns-cache").unwrap();
    let _agent = start(&mut sb, &[]);
    // dig sends a fresh id each time; +nocookie keeps the EDNS options (part
    // of the cache key) the same. The cache keeps 8 answer orders per
    // question before it serves from them (l4lb_core::dns::reply_cache).
    for _ in 0..20 {
        assert!(sb.dig(&["+nocookie", VIP_NAME]).contains("ANSWER: 1"));
    }
    let hits = metric(&sb, "l4lb_dns_reply_cache_hits_total");
    assert!(hits >= 4, "{hits} cache hits for 20 identical questions");
    // A different question is not a hit.
    sb.dig(&["+nocookie", "other.marathon.l4lb.thisdcos.directory"]);
    assert_eq!(metric(&sb, "l4lb_dns_reply_cache_hits_total"), hits);
}
