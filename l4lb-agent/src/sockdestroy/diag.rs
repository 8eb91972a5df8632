//! The sock_diag wire client: list the connected UDP sockets of one family
//! (`SOCK_DIAG_BY_FAMILY`, state mask ESTABLISHED = connected) and destroy
//! one by its id (`SOCK_DESTROY`). Messages are built and parsed by
//! `netlink-packet-sock-diag` (uapi `linux/sock_diag.h`, `linux/inet_diag.h`)
//! over a `netlink-sys` socket; what stays here is the request/reply loop:
//! sequence numbers, a receive timeout and a deadline per request, so odd or
//! missing replies end a request instead of blocking the agent.
use std::{
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_sock_diag::{
    IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, SockDiagDestroy, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};

use super::canonical;

pub(super) const AF_INET: u8 = libc::AF_INET as u8;
pub(super) const AF_INET6: u8 = libc::AF_INET6 as u8;
/// A connected UDP socket is in TCP_ESTABLISHED; an unconnected one in TCP_CLOSE.
const TCP_ESTABLISHED: u8 = 1;
/// No reply for this long (the kernel answers in microseconds) ends a request.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole dump may not take longer than this (bounds the loop however odd the replies).
const DUMP_DEADLINE: Duration = Duration::from_secs(10);
const RECV_BUF: usize = 64 * 1024;

/// One socket from a dump: the parsed fields plus the id to destroy it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DiagSock {
    pub family: u8,
    pub state: u8,
    /// `inet_diag_sockid` as the kernel sent it (addresses, ports, interface
    /// AND cookie, so a socket closed and replaced in between is not hit).
    pub id: SocketId,
    pub src: SocketAddr,
    /// Canonical (v4-mapped → v4).
    pub dst: SocketAddr,
    pub cookie: u64,
}

/// What one netlink message of a reply says.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// A socket of the dump.
    Socket(DiagSock),
    /// NLMSG_ERROR: 0 = an ack, else the errno.
    Error(i32),
    /// NLMSG_DONE with its errno (0 = the dump is complete).
    Done(i32),
    /// Anything else (NOOP, a socket message that does not parse): ignored.
    Other,
}

/// Reads an `inet_diag_msg` reply; None if it is short or of an unknown family.
fn diag_sock(m: &SockDiagMessage) -> Option<DiagSock> {
    let SockDiagMessage::InetResponse(r) = m else {
        return None;
    };
    let h = &r.header;
    let id = h.socket_id.clone();
    let src = SocketAddr::new(id.source_address, id.source_port);
    let dst = canonical(SocketAddr::new(id.destination_address, id.destination_port));
    // sock_diag_save_cookie: [0] = low 32 bits, [1] = high, host order.
    let c = id.cookie;
    let lo = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    let hi = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]);
    Some(DiagSock {
        family: h.family,
        state: h.state,
        id,
        src,
        dst,
        cookie: u64::from(lo) | (u64::from(hi) << 32),
    })
}

/// Splits a datagram into (sequence number, reply) pairs; the flag is false
/// when it stopped at a malformed header or an unreadable error/done message.
fn split_replies(buf: &[u8]) -> (Vec<(u32, Reply)>, bool) {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let Ok(nl) = NetlinkBuffer::new_checked(&buf[off..]) else {
            return (out, false);
        };
        let (len, ty, seq) = (
            nl.length() as usize,
            nl.message_type(),
            nl.sequence_number(),
        );
        let reply = match NetlinkMessage::<SockDiagMessage>::deserialize(&buf[off..off + len]) {
            Ok(m) => match m.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    diag_sock(&inner).map_or(Reply::Other, Reply::Socket)
                }
                NetlinkPayload::Error(e) => Reply::Error(-e.raw_code()),
                NetlinkPayload::Done(d) => Reply::Done(-d.code),
                _ => Reply::Other,
            },
            // A socket we cannot read is skipped; an unreadable error or
            // end of dump makes the whole reply unusable.
            Err(_) if ty == SOCK_DIAG_BY_FAMILY => Reply::Other,
            Err(_) => return (out, false),
        };
        out.push((seq, reply));
        off += (len + 3) & !3;
    }
    (out, true)
}

/// A finished netlink message (header + `inner`) as bytes.
fn serialize<T: NetlinkSerializable>(flags: u16, seq: u32, inner: T) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// `inet_diag_req_v2` for UDP of `family`.
fn udp_request(family: u8, states: StateFlags, socket_id: SocketId) -> SockDiagMessage {
    SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_UDP,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id,
    })
}

/// The dump request: every connected UDP socket of `family` (ports 0 = any).
fn dump_request(seq: u32, family: u8) -> Vec<u8> {
    let any = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    serialize(
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        udp_request(family, StateFlags::ESTABLISHED, any),
    )
}

/// SOCK_DESTROY of `s`, named by its full id; every state matches.
fn destroy_request(seq: u32, s: &DiagSock) -> Vec<u8> {
    let all = StateFlags::from_bits_retain(u32::MAX);
    let req = udp_request(s.family, all, s.id.clone());
    serialize(NLM_F_REQUEST | NLM_F_ACK, seq, SockDiagDestroy::new(req))
}

pub(super) struct SockDiag {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    pub fn open() -> Result<SockDiag> {
        let socket =
            Socket::new(NETLINK_SOCK_DIAG).context("opening a NETLINK_SOCK_DIAG socket")?;
        socket
            .connect(&NetlinkAddr::new(0, 0))
            .context("addressing the kernel on the sock_diag socket")?;
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: tv outlives the call; the length is its size. netlink-sys
        // has no receive timeout of its own.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error())
                .context("setting SO_RCVTIMEO on the sock_diag socket");
        }
        Ok(SockDiag {
            socket,
            seq: std::process::id().wrapping_mul(7919),
            buf: vec![0; RECV_BUF],
        })
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        loop {
            match self.socket.send(msg, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One datagram into `self.buf`; returns its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // MSG_TRUNC makes the kernel return the real length, so a
            // truncation is detected.
            match self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::other(format!(
                        "netlink reply of {n} bytes truncated to {}",
                        self.buf.len()
                    )));
                }
                Ok(n) => return Ok(n),
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "no netlink reply"));
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Calls `each` with every connected UDP socket of `family` in this netns.
    pub fn dump_connected_udp(&mut self, family: u8, mut each: impl FnMut(DiagSock)) -> Result<()> {
        let seq = self.next_seq();
        self.send(&dump_request(seq, family))
            .context("sending the dump request")?;
        let deadline = Instant::now() + DUMP_DEADLINE;
        while Instant::now() < deadline {
            let n = self.recv().context("reading the dump")?;
            let (replies, well_formed) = split_replies(&self.buf[..n]);
            for (mseq, reply) in replies {
                if mseq != seq {
                    continue; // a late answer to an earlier request
                }
                match reply {
                    Reply::Done(e) if e > 0 => {
                        return Err(io::Error::from_raw_os_error(e))
                            .context("dump ended with an error");
                    }
                    Reply::Done(_) => return Ok(()),
                    Reply::Error(0) => {}
                    Reply::Error(e) => {
                        return Err(io::Error::from_raw_os_error(e))
                            .context("the kernel refused the dump");
                    }
                    Reply::Socket(s) => {
                        if s.family == family
                            && s.state == TCP_ESTABLISHED
                            && s.dst.port() != 0
                            && !s.dst.ip().is_unspecified()
                        {
                            each(s);
                        }
                    }
                    Reply::Other => {}
                }
            }
            if !well_formed {
                anyhow::bail!("malformed netlink message in the dump");
            }
        }
        anyhow::bail!("dump did not finish within {DUMP_DEADLINE:?}")
    }

    /// SOCK_DESTROY by the socket's full id; Ok once the kernel acked it.
    pub fn destroy(&mut self, s: &DiagSock) -> io::Result<()> {
        let seq = self.next_seq();
        self.send(&destroy_request(seq, s))?;
        let deadline = Instant::now() + RECV_TIMEOUT * 2;
        while Instant::now() < deadline {
            let n = self.recv()?;
            let (replies, well_formed) = split_replies(&self.buf[..n]);
            for (mseq, reply) in replies {
                if mseq == seq
                    && let Reply::Error(e) = reply
                {
                    return match e {
                        0 => Ok(()),
                        e => Err(io::Error::from_raw_os_error(e)),
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

/// `AF_INET` / `AF_INET6` for messages.
pub(super) fn family_name(family: u8) -> &'static str {
    if family == AF_INET { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    const NLMSG_HDRLEN: usize = 16;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const SOCK_DESTROY: u16 = 21;
    /// `struct inet_diag_msg`: family, state, timer, retrans, sockid (48),
    /// expires, rqueue, wqueue, uid, inode.
    const MSG_LEN: usize = 4 + 48 + 20;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// An `inet_diag_msg` as the kernel sends it.
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

    /// The one socket of a one-message reply.
    fn parse(payload: &[u8]) -> Option<DiagSock> {
        match split_replies(&nl(SOCK_DIAG_BY_FAMILY, 1, payload)).0.pop() {
            Some((_, Reply::Socket(s))) => Some(s),
            _ => None,
        }
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
        let s = parse(&p).unwrap();
        assert_eq!(
            (s.src, s.dst, s.cookie, s.state),
            (
                sa("127.0.0.1:40000"),
                sa("127.0.0.2:7001"),
                0x1234_5678_9abc_def0,
                1
            )
        );
        // The id goes back to the kernel exactly as it came (SOCK_DESTROY).
        let r = destroy_request(9, &s);
        assert_eq!(&r[NLMSG_HDRLEN + 8..], &p[4..52], "the id is kept verbatim");

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
        let s = parse(&p).unwrap();
        assert_eq!(s.dst, sa("10.0.0.9:53"));
        let r = destroy_request(9, &s);
        assert_eq!(&r[NLMSG_HDRLEN + 8..], &p[4..52], "v4-mapped id verbatim");
        let p = msg(
            AF_INET6,
            1,
            &[0; 16],
            1,
            &"fd00::2".parse::<Ipv6Addr>().unwrap().octets(),
            53,
            7,
        );
        assert_eq!(parse(&p).unwrap().dst, sa("[fd00::2]:53"));
    }

    #[test]
    fn odd_replies_never_panic() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[2; MSG_LEN - 1]), None);
        assert_eq!(
            parse(&msg(99, 1, &[], 1, &[], 1, 1)),
            None,
            "unknown family"
        );
        for buf in [
            &[][..],
            &[1, 2, 3],
            &[0xff; 16],
            &[16, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
        ] {
            let _ = split_replies(buf);
        }
        // A length smaller than the header, or past the end: stop, flag it.
        let mut bad = nl(NLMSG_DONE, 1, &[0; 4]);
        bad[0] = 3;
        assert!(!split_replies(&bad).1);
        let mut bad = nl(NLMSG_DONE, 1, &[0; 4]);
        bad[0] = 200;
        assert!(!split_replies(&bad).1);
        // A short NLMSG_ERROR cannot be read: the reply is unusable.
        assert!(!split_replies(&nl(NLMSG_ERROR, 1, &[1])).1);
        // Every prefix of a valid stream parses without panicking.
        let mut stream = nl(
            SOCK_DIAG_BY_FAMILY,
            5,
            &msg(AF_INET, 1, &[1, 2, 3, 4], 1, &[5, 6, 7, 8], 2, 3),
        );
        stream.extend(nl(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        for i in 0..=stream.len() {
            let _ = split_replies(&stream[..i]);
        }
    }

    #[test]
    fn splits_aligned_messages() {
        let mut stream = nl(
            SOCK_DIAG_BY_FAMILY,
            5,
            &msg(AF_INET, 1, &[1, 2, 3, 4], 1, &[5, 6, 7, 8], 2, 3),
        );
        // NLMSG_ERROR carries the errno and the request's header.
        let mut err = (-libc::ENOENT).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0; NLMSG_HDRLEN]);
        stream.extend(nl(NLMSG_ERROR, 6, &err));
        stream.extend(nl(NLMSG_DONE, 5, &[0, 0, 0, 0, 1])); // unaligned length, padded
        let (replies, ok) = split_replies(&stream);
        assert!(ok);
        let kinds: Vec<_> = replies
            .iter()
            .map(|(seq, r)| {
                let kind = match r {
                    Reply::Socket(_) => "socket",
                    Reply::Error(_) => "error",
                    Reply::Done(_) => "done",
                    Reply::Other => "other",
                };
                (kind, *seq)
            })
            .collect();
        assert_eq!(kinds, vec![("socket", 5), ("error", 6), ("done", 5)]);
        assert_eq!(replies[1].1, Reply::Error(libc::ENOENT));
        assert_eq!(replies[2].1, Reply::Done(0));
    }

    #[test]
    fn request_layout_matches_the_uapi() {
        let p = msg(
            AF_INET6,
            1,
            &[7; 16],
            0x0707,
            &[7; 16],
            0x0707,
            0x0707_0707_0707_0707,
        );
        let s = parse(&p).unwrap();
        let r = destroy_request(9, &s);
        assert_eq!(r.len(), 16 + 56);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DESTROY);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 9);
        assert_eq!(&r[16..20], &[AF_INET6, 17, 0, 0]);
        assert_eq!(&r[20..24], &u32::MAX.to_ne_bytes(), "every state");
        assert_eq!(&r[24..], &p[4..52]);

        let d = dump_request(3, AF_INET);
        assert_eq!(d.len(), 72);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([d[6], d[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(&d[16..20], &[AF_INET, 17, 0, 0]);
        assert_eq!(&d[20..24], &(1u32 << TCP_ESTABLISHED).to_ne_bytes());
        assert_eq!(&d[24..], &[0; 48], "any socket");
    }
}
