//! Queries in, replies out, a batch per system call (recvmmsg/sendmmsg).
//!
//! Under load a query used to cost a recvfrom, a sendto and often a wake-up
//! of the runtime each; the kernel's share of that was most of the server's
//! CPU. One readiness wake-up now drains up to [`BATCH`] queries and sends
//! their replies together.
use std::{
    io::{self, IoSlice, IoSliceMut},
    net::SocketAddr,
    os::fd::RawFd,
};

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Room for one query. A DNS query is a header, one name (≤ 255 bytes) and
/// an OPT record; what does not fit is cut (MSG_TRUNC) and dropped.
pub const QUERY_ROOM: usize = 4096;

/// One received datagram: where it sits in [`Batch::query`], its size and
/// sender.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub peer: Option<SocketAddr>,
    /// It was larger than [`QUERY_ROOM`].
    pub truncated: bool,
}

/// Buffers for one batch, reused by every call. (The message headers are
/// made per call: they hold raw pointers, which would keep the serving task
/// from moving between the runtime's threads; two small allocations per
/// batch.)
pub struct Batch {
    bufs: Vec<Box<[u8; QUERY_ROOM]>>,
    received: Vec<Received>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: (0..BATCH).map(|_| Box::new([0u8; QUERY_ROOM])).collect(),
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl Batch {
    /// Reads what is queued on `fd` (a non-blocking UDP socket), up to
    /// [`BATCH`] datagrams, and returns how many; `WouldBlock` when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received.clear();
        let mut iovs: Vec<[IoSliceMut; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let flags = MsgFlags::MSG_DONTWAIT;
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let msgs = recvmmsg(fd, &mut headers, iovs.iter_mut(), flags, None)?;
        for m in msgs {
            self.received.push(Received {
                len: m.bytes.min(QUERY_ROOM),
                peer: m.address.as_ref().and_then(to_std),
                truncated: m.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(self.received.len())
    }

    /// What the `i`-th datagram of the last [`Self::recv`] was.
    pub fn received(&self, i: usize) -> Received {
        self.received[i]
    }

    /// The `i`-th datagram of the last [`Self::recv`].
    pub fn query(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.received[i].len]
    }
}

/// Sends `replies` (at most [`BATCH`]) from `fd`; returns how many went
/// (the first ones). `WouldBlock` when the socket's buffer is full.
pub fn send(fd: RawFd, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let replies = &replies[..replies.len().min(BATCH)];
    let slices: Vec<[IoSlice; 1]> = replies.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|(_, peer)| Some(SockaddrStorage::from(*peer)))
        .collect();
    let flags = MsgFlags::MSG_DONTWAIT;
    let none: [ControlMessage; 0] = [];
    let mut headers = MultiHeaders::preallocate(replies.len(), None);
    let sent = sendmmsg(fd, &mut headers, &slices, addrs, none, flags)?;
    Ok(sent.count())
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn received(batch: &mut Batch, fd: RawFd) -> Vec<Received> {
        let n = batch.recv(fd).unwrap();
        (0..n).map(|i| batch.received(i)).collect()
    }

    #[test]
    fn a_burst_is_read_in_one_call_and_answered_in_one() {
        let (server, client) = pair();
        let to = server.local_addr().unwrap();
        for i in 0..40u8 {
            client.send_to(&[i; 20], to).unwrap();
        }
        let mut batch = Batch::default();
        let got = received(&mut batch, server.as_raw_fd());
        assert_eq!(got.len(), BATCH, "one call reads a whole batch");
        assert!(got.iter().all(|r| r.len == 20 && !r.truncated));
        assert_eq!(got[0].peer, Some(client.local_addr().unwrap()));
        assert_eq!(batch.query(3), &[3u8; 20]);
        let replies: Vec<_> = (0..got.len())
            .map(|i| (batch.query(i).to_vec(), got[i].peer.unwrap()))
            .collect();
        assert_eq!(send(server.as_raw_fd(), &replies).unwrap(), BATCH);
        let mut buf = [0u8; 64];
        for i in 0..BATCH as u8 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 20]);
        }
        // The rest of the burst is the next batch; then nothing is queued.
        assert_eq!(batch.recv(server.as_raw_fd()).unwrap(), 8);
        let empty = batch.recv(server.as_raw_fd()).unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn an_oversized_datagram_is_marked_cut() {
        let (server, client) = pair();
        client
            .send_to(&vec![7u8; QUERY_ROOM + 100], server.local_addr().unwrap())
            .unwrap();
        let mut batch = Batch::default();
        let got = received(&mut batch, server.as_raw_fd());
        assert_eq!(got.len(), 1);
        assert!(got[0].truncated);
        assert_eq!(got[0].len, QUERY_ROOM);
    }

    #[test]
    fn ipv6_peers_round_trip() {
        let server = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
        server.set_nonblocking(true).unwrap();
        client.send_to(b"q", server.local_addr().unwrap()).unwrap();
        let mut batch = Batch::default();
        let got = received(&mut batch, server.as_raw_fd());
        let peer = got[0].peer.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let reply = [(b"a".to_vec(), peer)];
        assert_eq!(send(server.as_raw_fd(), &reply).unwrap(), 1);
        let mut buf = [0u8; 8];
        assert_eq!(client.recv_from(&mut buf).unwrap().0, 1);
    }
}
