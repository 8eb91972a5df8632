//! Connected UDP sockets whose backend was removed are destroyed (issue 6).
//!
//! The connect hook rewrites a UDP socket's connect() from the VIP to one
//! backend, once; from then on the kernel sends every datagram of that socket
//! to that backend. When the backend leaves the VIP nothing would ever move
//! the socket, and the application would send into the void forever. So after
//! a table change the agent:
//!
//! 1. dumps the connected UDP sockets of its network namespace with sock_diag
//!    (`SOCK_DIAG_BY_FAMILY`, protocol UDP, state mask ESTABLISHED = connected;
//!    AF_INET6 as well, for dual-stack sockets connected to `::ffff:a.b.c.d`);
//! 2. keeps those whose destination is exactly a removed backend `addr:port`
//!    AND for which the caller's predicate holds for (socket cookie, backend):
//!    the agent passes "the reverse-NAT map has an entry for this cookie and
//!    backend, and that entry's VIP no longer has the backend", i.e. the socket
//!    was connected THROUGH a VIP. A socket that talks to the same address by
//!    itself has no such entry and is never touched;
//! 3. destroys each with `SOCK_DESTROY`, naming it by its full id as the dump
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
//! i.e. the agent's own. Plain netlink over libc; no aya here (the predicate is
//! how `datapath` contributes the reverse-NAT lookup).
use std::{
    collections::{BTreeMap, BTreeSet},
    io, mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    model::{Proto, Vip},
    plan::Applied,
};

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

/// The UDP (VIP, backend) pairs one table change removed: a backend that left
/// a UDP VIP, or every backend of a UDP VIP that is gone. A backend whose
/// weight went to 0 is still a member (draining: existing sockets stay), and a
/// backend that left one VIP but stays in another is stale only for the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaleUdp {
    /// canonical backend → canonical VIP addresses it left.
    by_backend: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
}

impl StaleUdp {
    /// Compares what the maps held before a reconcile with what they hold after.
    pub fn between(before: &Applied, after: &Applied) -> StaleUdp {
        let mut stale = StaleUdp::default();
        let kept = udp_pairs(after);
        for (vip, backend) in udp_pairs(before).difference(&kept) {
            stale.insert(*vip, *backend);
        }
        stale
    }

    /// `backend` left `vip` (both UDP socket addresses).
    pub fn insert(&mut self, vip: SocketAddr, backend: SocketAddr) {
        self.by_backend
            .entry(canonical(backend))
            .or_default()
            .insert(canonical(vip));
    }

    pub fn is_empty(&self) -> bool {
        self.by_backend.is_empty()
    }

    /// The backends to pass to [`destroy_connected_udp`].
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.by_backend.keys().copied().collect()
    }

    /// Whether a socket connected through `vip` to `backend` is stale.
    pub fn is_stale(&self, vip: SocketAddr, backend: SocketAddr) -> bool {
        self.by_backend
            .get(&canonical(backend))
            .is_some_and(|vips| vips.contains(&canonical(vip)))
    }
}

/// (VIP, backend) for every member (any weight) of every UDP service.
fn udp_pairs(a: &Applied) -> BTreeSet<(SocketAddr, SocketAddr)> {
    let mut out = BTreeSet::new();
    for (Vip { addr, proto }, svc) in &a.services {
        if *proto != Proto::Udp {
            continue;
        }
        for id in svc.members.keys() {
            if let Some(b) = a.backends.get(id) {
                out.insert((canonical(*addr), canonical(*b)));
            }
        }
    }
    out
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

fn family_name(family: u8) -> &'static str {
    if family == AF_INET { "IPv4" } else { "IPv6" }
}

// ---- sock_diag over netlink (uapi: linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h) ----

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300; // ROOT | MATCH
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_sockid`: sport, dport (be16), src[4], dst[4] (be32), if, cookie[2].
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg`: family, state, timer, retrans, sockid, expires, rqueue, wqueue, uid, inode.
const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// A connected UDP socket is in TCP_ESTABLISHED; an unconnected one in TCP_CLOSE.
const TCP_ESTABLISHED: u8 = 1;
/// No reply for this long (the kernel answers in microseconds) ends a request.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole dump may not take longer than this (bounds the loop however odd the replies).
const DUMP_DEADLINE: Duration = Duration::from_secs(10);
const RECV_BUF: usize = 64 * 1024;

/// One socket from a dump: the parsed fields plus the raw id to destroy it by.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DiagSock {
    family: u8,
    state: u8,
    /// `inet_diag_sockid` exactly as the kernel sent it (incl. interface and cookie).
    id: [u8; SOCKID_LEN],
    src: SocketAddr,
    /// Canonical (v4-mapped → v4).
    dst: SocketAddr,
    cookie: u64,
}

/// Parses one `inet_diag_msg`; None if it is short or of an unknown family.
fn parse_diag_msg(p: &[u8]) -> Option<DiagSock> {
    if p.len() < MSG_LEN {
        return None;
    }
    let family = p[0];
    let state = p[1];
    let id: [u8; SOCKID_LEN] = p[4..4 + SOCKID_LEN].try_into().ok()?;
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let ip = |o: &[u8]| -> Option<IpAddr> {
        match family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(o).ok()?))),
            _ => None,
        }
    };
    let src = SocketAddr::new(ip(&id[4..20])?, sport);
    let dst = canonical(SocketAddr::new(ip(&id[20..36])?, dport));
    // sock_diag_save_cookie: [0] = low 32 bits, [1] = high, host order.
    let lo = u32::from_ne_bytes(id[40..44].try_into().ok()?);
    let hi = u32::from_ne_bytes(id[44..48].try_into().ok()?);
    Some(DiagSock {
        family,
        state,
        id,
        src,
        dst,
        cookie: u64::from(lo) | (u64::from(hi) << 32),
    })
}

/// One netlink message: (type, flags, seq, payload).
type NlMsg<'a> = (u16, u16, u32, &'a [u8]);

/// Splits a datagram into netlink messages; stops at the first malformed header.
fn split_messages(mut buf: &[u8]) -> (Vec<NlMsg<'_>>, bool) {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < NLMSG_HDRLEN {
            return (out, false);
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return (out, false);
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        out.push((ty, flags, seq, &buf[NLMSG_HDRLEN..len]));
        let aligned = (len + 3) & !3;
        buf = buf.get(aligned..).unwrap_or(&[]);
    }
    (out, true)
}

/// The errno in an NLMSG_ERROR / NLMSG_DONE payload (0 = success / ack).
fn payload_errno(p: &[u8]) -> Option<i32> {
    Some(-i32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// nlmsghdr + inet_diag_req_v2.
fn request(
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    states: u32,
    id: &[u8; SOCKID_LEN],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    m.extend_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills ours in
    m.extend_from_slice(&[family, libc::IPPROTO_UDP as u8, 0, 0]);
    m.extend_from_slice(&states.to_ne_bytes());
    m.extend_from_slice(id);
    m
}

struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    fn open() -> Result<SockDiag> {
        // SAFETY: plain syscalls on a fresh fd that we own.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("opening a NETLINK_SOCK_DIAG socket");
        }
        // SAFETY: fd is a valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: tv outlives the call; the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error())
                .context("setting SO_RCVTIMEO on the sock_diag socket");
        }
        Ok(SockDiag {
            fd,
            seq: std::process::id().wrapping_mul(7919),
            buf: vec![0; RECV_BUF],
        })
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all zero except the family = the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: msg and kernel outlive the call; lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&raw const kernel).cast(),
                    mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// One datagram into `self.buf`; returns its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: the buffer is ours and as long as we say. MSG_TRUNC makes
            // the kernel return the real length, so a truncation is detected.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > self.buf.len() {
                    return Err(io::Error::other(format!(
                        "netlink reply of {n} bytes truncated to {}",
                        self.buf.len()
                    )));
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no netlink reply"));
                }
                _ => return Err(e),
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Calls `each` with every connected UDP socket of `family` in this netns.
    fn dump_connected_udp(&mut self, family: u8, mut each: impl FnMut(DiagSock)) -> Result<()> {
        let seq = self.next_seq();
        let req = request(
            SOCK_DIAG_BY_FAMILY,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            1 << TCP_ESTABLISHED,
            &[0; SOCKID_LEN], // ports 0 = any
        );
        self.send(&req).context("sending the dump request")?;
        let deadline = Instant::now() + DUMP_DEADLINE;
        while Instant::now() < deadline {
            let n = self.recv().context("reading the dump")?;
            let (msgs, well_formed) = split_messages(&self.buf[..n]);
            for (ty, _flags, mseq, payload) in msgs {
                if mseq != seq {
                    continue; // a late answer to an earlier request
                }
                match ty {
                    NLMSG_DONE => {
                        return match payload_errno(payload) {
                            Some(e) if e > 0 => Err(io::Error::from_raw_os_error(e))
                                .context("dump ended with an error"),
                            _ => Ok(()),
                        };
                    }
                    NLMSG_ERROR => match payload_errno(payload) {
                        Some(0) => {}
                        Some(e) => {
                            return Err(io::Error::from_raw_os_error(e))
                                .context("the kernel refused the dump");
                        }
                        None => anyhow::bail!("short NLMSG_ERROR in the dump"),
                    },
                    SOCK_DIAG_BY_FAMILY => {
                        if let Some(s) = parse_diag_msg(payload)
                            && s.family == family
                            && s.state == TCP_ESTABLISHED
                            && s.dst.port() != 0
                            && !s.dst.ip().is_unspecified()
                        {
                            each(s);
                        }
                    }
                    _ => {}
                }
            }
            if !well_formed {
                anyhow::bail!("malformed netlink message in the dump");
            }
        }
        anyhow::bail!("dump did not finish within {DUMP_DEADLINE:?}")
    }

    /// SOCK_DESTROY by the socket's full id; Ok once the kernel acked it.
    fn destroy(&mut self, s: &DiagSock) -> io::Result<()> {
        let seq = self.next_seq();
        let req = request(
            SOCK_DESTROY,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            s.family,
            u32::MAX,
            &s.id,
        );
        self.send(&req)?;
        let deadline = Instant::now() + RECV_TIMEOUT * 2;
        while Instant::now() < deadline {
            let n = self.recv()?;
            let (msgs, well_formed) = split_messages(&self.buf[..n]);
            for (ty, _flags, mseq, payload) in msgs {
                if mseq == seq && ty == NLMSG_ERROR {
                    return match payload_errno(payload) {
                        Some(0) => Ok(()),
                        Some(e) => Err(io::Error::from_raw_os_error(e)),
                        None => Err(io::Error::other("short NLMSG_ERROR")),
                    };
                }
            }
            if !well_formed {
                return Err(io::Error::other("malformed netlink reply"));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no SOCK_DESTROY ack",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AppliedService;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn msg(
        family: u8,
        state: u8,
        src: &[u8],
        sport: u16,
        dst: &[u8],
        dport: u16,
        cookie: u64,
    ) -> Vec<u8> {
        let mut p = vec![family, state, 0, 0];
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        let mut a = [0u8; 16];
        a[..src.len()].copy_from_slice(src);
        p.extend_from_slice(&a);
        let mut a = [0u8; 16];
        a[..dst.len()].copy_from_slice(dst);
        p.extend_from_slice(&a);
        p.extend_from_slice(&0u32.to_ne_bytes());
        p.extend_from_slice(&(cookie as u32).to_ne_bytes());
        p.extend_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    fn nl(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn parses_v4_and_v4_mapped_v6_and_the_cookie() {
        let p = msg(
            AF_INET,
            1,
            &[127, 0, 0, 1],
            40000,
            &[127, 0, 0, 2],
            7001,
            0x1234_5678_9abc_def0,
        );
        let s = parse_diag_msg(&p).unwrap();
        assert_eq!(
            (s.src, s.dst, s.cookie, s.state),
            (
                sa("127.0.0.1:40000"),
                sa("127.0.0.2:7001"),
                0x1234_5678_9abc_def0,
                1
            )
        );
        assert_eq!(
            &s.id[..],
            &p[4..52],
            "the id is kept verbatim for SOCK_DESTROY"
        );

        let mapped = |v4: [u8; 4]| {
            let mut a = [0u8; 16];
            a[10] = 0xff;
            a[11] = 0xff;
            a[12..].copy_from_slice(&v4);
            a
        };
        let p = msg(
            AF_INET6,
            1,
            &mapped([127, 0, 0, 1]),
            1,
            &mapped([10, 0, 0, 9]),
            53,
            7,
        );
        assert_eq!(parse_diag_msg(&p).unwrap().dst, sa("10.0.0.9:53"));
        let p = msg(
            AF_INET6,
            1,
            &[0; 16],
            1,
            &"fd00::2".parse::<Ipv6Addr>().unwrap().octets(),
            53,
            7,
        );
        assert_eq!(parse_diag_msg(&p).unwrap().dst, sa("[fd00::2]:53"));
    }

    #[test]
    fn odd_replies_never_panic() {
        assert_eq!(parse_diag_msg(&[]), None);
        assert_eq!(parse_diag_msg(&[2; MSG_LEN - 1]), None);
        assert_eq!(
            parse_diag_msg(&msg(99, 1, &[], 1, &[], 1, 1)),
            None,
            "unknown family"
        );
        for buf in [
            &[][..],
            &[1, 2, 3],
            &[0xff; 16],
            &[16, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
        ] {
            let _ = split_messages(buf);
        }
        // A length smaller than the header, or past the end: stop, flag it.
        let mut bad = nl(NLMSG_DONE, 1, &[0; 4]);
        bad[0] = 3;
        assert!(!split_messages(&bad).1);
        let mut bad = nl(NLMSG_DONE, 1, &[0; 4]);
        bad[0] = 200;
        assert!(!split_messages(&bad).1);
        assert_eq!(payload_errno(&[1]), None);
        // Every prefix of a valid stream parses without panicking.
        let mut stream = nl(
            SOCK_DIAG_BY_FAMILY,
            5,
            &msg(AF_INET, 1, &[1, 2, 3, 4], 1, &[5, 6, 7, 8], 2, 3),
        );
        stream.extend(nl(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        for i in 0..=stream.len() {
            for (_, _, _, p) in split_messages(&stream[..i]).0 {
                let _ = parse_diag_msg(p);
            }
        }
    }

    #[test]
    fn splits_aligned_messages() {
        let mut stream = nl(
            SOCK_DIAG_BY_FAMILY,
            5,
            &msg(AF_INET, 1, &[1, 2, 3, 4], 1, &[5, 6, 7, 8], 2, 3),
        );
        stream.extend(nl(NLMSG_ERROR, 6, &(-libc::ENOENT).to_ne_bytes()));
        stream.extend(nl(NLMSG_DONE, 5, &[0, 0, 0, 0, 1])); // unaligned length, padded
        let (msgs, ok) = split_messages(&stream);
        assert!(ok);
        let kinds: Vec<_> = msgs.iter().map(|m| (m.0, m.2)).collect();
        assert_eq!(
            kinds,
            vec![(SOCK_DIAG_BY_FAMILY, 5), (NLMSG_ERROR, 6), (NLMSG_DONE, 5)]
        );
        assert_eq!(payload_errno(msgs[1].3), Some(libc::ENOENT));
    }

    #[test]
    fn request_layout_matches_the_uapi() {
        let id = [7u8; SOCKID_LEN];
        let r = request(
            SOCK_DESTROY,
            NLM_F_REQUEST | NLM_F_ACK,
            9,
            AF_INET6,
            u32::MAX,
            &id,
        );
        assert_eq!(r.len(), 16 + 56);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 21);
        assert_eq!(&r[16..20], &[AF_INET6, 17, 0, 0]);
        assert_eq!(&r[24..], &id[..]);
    }

    fn applied(services: &[(&str, Proto, &[&str])]) -> Applied {
        let mut a = Applied::default();
        let mut ids = BTreeMap::new();
        for (i, (vip, proto, backends)) in services.iter().enumerate() {
            let mut svc = AppliedService {
                id: i as u32 + 1,
                ..Default::default()
            };
            for b in *backends {
                let n = ids.len() as u32 + 1;
                let id = *ids.entry(sa(b)).or_insert(n);
                a.backends.insert(id, sa(b));
                svc.members.insert(id, 1);
            }
            a.services.insert(
                Vip {
                    addr: sa(vip),
                    proto: *proto,
                },
                svc,
            );
        }
        a
    }

    #[test]
    fn stale_pairs_are_per_vip_and_udp_only() {
        let before = applied(&[
            ("11.0.0.1:53", Proto::Udp, &["10.0.0.1:53", "10.0.0.2:53"]),
            ("11.0.0.2:53", Proto::Udp, &["10.0.0.1:53"]),
            ("11.0.0.3:53", Proto::Udp, &["10.0.0.3:53"]),
            ("11.0.0.4:80", Proto::Tcp, &["10.0.0.4:80"]),
        ]);
        let after = applied(&[
            ("11.0.0.1:53", Proto::Udp, &["10.0.0.2:53"]),
            ("11.0.0.2:53", Proto::Udp, &["10.0.0.1:53"]),
        ]);
        let s = StaleUdp::between(&before, &after);
        assert_eq!(s.backends(), vec![sa("10.0.0.1:53"), sa("10.0.0.3:53")]);
        assert!(s.is_stale(sa("11.0.0.1:53"), sa("10.0.0.1:53")));
        assert!(
            !s.is_stale(sa("11.0.0.2:53"), sa("10.0.0.1:53")),
            "still a member of the second VIP"
        );
        assert!(
            s.is_stale(sa("11.0.0.3:53"), sa("10.0.0.3:53")),
            "VIP removed"
        );
        assert!(
            s.is_stale(sa("[::ffff:11.0.0.3]:53"), sa("[::ffff:10.0.0.3]:53")),
            "v4-mapped forms"
        );
        assert!(!s.is_stale(sa("11.0.0.1:53"), sa("10.0.0.2:53")));
        assert!(StaleUdp::between(&after, &after).is_empty());
    }

    #[test]
    fn nothing_to_do_opens_no_socket() {
        let r = destroy_connected_udp(&[], |_, _| panic!("no socket to ask about")).unwrap();
        assert_eq!(r, DestroyReport::default());
    }
}
