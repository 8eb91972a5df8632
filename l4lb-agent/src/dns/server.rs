//! The DNS listeners: UDP and TCP on every `--dns-listen` address, answers
//! from [`respond`], forwarding to `--dns-upstream` servers.
//!
//! Own socket loops on tokio rather than hickory-server's `ServerFuture`:
//! - the bytes the fuzzer feeds [`crate::dns::answer`] are exactly what the
//!   sockets hand it (ServerFuture parses before a handler sees anything, and
//!   answers malformed queries itself, uncounted);
//! - forwarding "as received" needs the raw query, which ServerFuture drops;
//! - sizing: ServerFuture sizes UDP replies by the reply's own EDNS record,
//!   and truncates mid-RRset; here the client's advertised size is honoured
//!   and truncation is all-or-nothing (see `answer`).
//!
//! Forwarding happens only when upstreams are configured, only for names
//! outside our zones and only for `--dns-allow` clients (others get REFUSED,
//! so the server is no open resolver); the query goes as received (RD bit included) over UDP
//! to each upstream in turn, each with the timeout, and the first answer is
//! relayed unchanged (a TCP client whose UDP answer came back truncated gets
//! the upstream's TCP answer). No upstream answered: SERVFAIL. This server
//! never recurses itself.
//!
//! UDP answers go through response-rate limiting ([`super::rrl`]), one table
//! per listener; TCP connections through [`super::tcp`]'s fairness rules.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use hickory_proto::op::ResponseCode;
use ipnet::IpNet;
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{Semaphore, watch},
    task::JoinHandle,
    time::{Instant, timeout, timeout_at},
};
use tracing::{debug, info};

use super::{
    acl,
    answer::{self, DEFAULT_UDP_CAP, Reply, ReplyOpts, respond},
    records::{ZoneOptions, Zones},
    reply_cache::ReplyCache,
    rrl::{Rrl, RrlConfig, Verdict},
    tcp::tcp_loop,
    udp_batch::{self, BATCH, Batch},
};

/// Everything the server needs; see [`crate::dns::DnsArgs`] for the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP on each (port 0: one ephemeral port shared by both).
    pub listen: Vec<SocketAddr>,
    /// TTLs and NS addresses, for whoever builds the zones.
    pub zone: ZoneOptions,
    /// Forward names outside our zones here; empty = REFUSED instead.
    pub upstreams: Vec<SocketAddr>,
    /// Only these clients' queries are forwarded; others get REFUSED.
    pub forward_allow: Vec<IpNet>,
    /// Clients allowed a zone transfer (AXFR, TCP only); empty = none.
    pub axfr_allow: Vec<IpNet>,
    /// UDP response-rate limiting.
    pub rrl: RrlConfig,
    /// Per upstream.
    pub upstream_timeout: Duration,
    /// Largest UDP reply to an EDNS client (advertised in our OPT).
    pub udp_cap: u16,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// A TCP message must arrive whole this soon after its first byte.
    pub tcp_message_timeout: Duration,
    /// A TCP reply must be taken by the client this soon.
    pub tcp_write_timeout: Duration,
    /// Open TCP connections per listener; beyond, the longest idle is closed.
    pub max_tcp_connections: usize,
    /// Open TCP connections per client address; beyond, its longest idle
    /// is closed.
    pub max_tcp_per_client: usize,
    /// Forwarded queries in flight; more get SERVFAIL.
    pub max_forwards: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: Vec::new(),
            zone: ZoneOptions::default(),
            upstreams: Vec::new(),
            forward_allow: acl::loopback(),
            axfr_allow: Vec::new(),
            rrl: RrlConfig::default(),
            upstream_timeout: Duration::from_secs(2),
            udp_cap: DEFAULT_UDP_CAP,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_message_timeout: Duration::from_secs(5),
            tcp_write_timeout: Duration::from_secs(5),
            max_tcp_connections: 256,
            max_tcp_per_client: 32,
            max_forwards: 256,
        }
    }
}

/// Queries by result, for the metrics endpoint. `truncated` counts replies
/// with TC (also counted under their rcode); `forwarded` counts queries sent
/// upstream (their relayed answers are not counted by rcode; a forward no
/// upstream answered also counts as `servfail`); `dropped` counts packets
/// not answered at all (shorter than a header, or responses). The `rrl_*`
/// and `tcp_*` counters are not query results: see [`CountersSnapshot::rrl`]
/// and [`CountersSnapshot::tcp_closed`].
#[derive(Debug, Default)]
pub struct DnsCounters {
    pub noerror: AtomicU64,
    pub nxdomain: AtomicU64,
    pub refused: AtomicU64,
    pub formerr: AtomicU64,
    pub notimp: AtomicU64,
    pub servfail: AtomicU64,
    /// Other rcodes (BADVERS).
    pub other: AtomicU64,
    pub truncated: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    /// UDP answers withheld by the rate limit.
    pub rrl_dropped: AtomicU64,
    /// UDP answers replaced by an empty TC reply by the rate limit.
    pub rrl_slipped: AtomicU64,
    /// TCP connections closed on a message cut short or stalled.
    pub tcp_incomplete: AtomicU64,
    /// Idle TCP connections closed to make room for a new one.
    pub tcp_evicted: AtomicU64,
    /// New TCP connections closed at once: every slot was being answered.
    pub tcp_refused: AtomicU64,
    /// UDP replies served from a socket's reply cache (counted in the rcode
    /// counters too).
    pub cache_hits: AtomicU64,
}

/// A copy of [`DnsCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    pub noerror: u64,
    pub nxdomain: u64,
    pub refused: u64,
    pub formerr: u64,
    pub notimp: u64,
    pub servfail: u64,
    pub other: u64,
    pub truncated: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub rrl_dropped: u64,
    pub rrl_slipped: u64,
    pub tcp_incomplete: u64,
    pub tcp_evicted: u64,
    pub tcp_refused: u64,
    pub cache_hits: u64,
}

impl CountersSnapshot {
    /// `(result, count)` pairs, e.g. for a `result` label on one counter family.
    pub fn by_result(&self) -> [(&'static str, u64); 10] {
        [
            ("noerror", self.noerror),
            ("nxdomain", self.nxdomain),
            ("refused", self.refused),
            ("formerr", self.formerr),
            ("notimp", self.notimp),
            ("servfail", self.servfail),
            ("other", self.other),
            ("truncated", self.truncated),
            ("forwarded", self.forwarded),
            ("dropped", self.dropped),
        ]
    }

    /// `(action, count)` of the UDP response-rate limit.
    pub fn rrl(&self) -> [(&'static str, u64); 2] {
        [("dropped", self.rrl_dropped), ("slipped", self.rrl_slipped)]
    }

    /// `(reason, count)` of TCP connections the server closed.
    pub fn tcp_closed(&self) -> [(&'static str, u64); 3] {
        [
            ("incomplete", self.tcp_incomplete),
            ("evicted", self.tcp_evicted),
            ("refused", self.tcp_refused),
        ]
    }
}

impl DnsCounters {
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            noerror: g(&self.noerror),
            nxdomain: g(&self.nxdomain),
            refused: g(&self.refused),
            formerr: g(&self.formerr),
            notimp: g(&self.notimp),
            servfail: g(&self.servfail),
            other: g(&self.other),
            truncated: g(&self.truncated),
            forwarded: g(&self.forwarded),
            dropped: g(&self.dropped),
            rrl_dropped: g(&self.rrl_dropped),
            rrl_slipped: g(&self.rrl_slipped),
            tcp_incomplete: g(&self.tcp_incomplete),
            tcp_evicted: g(&self.tcp_evicted),
            tcp_refused: g(&self.tcp_refused),
            cache_hits: g(&self.cache_hits),
        }
    }

    pub(super) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn sent(&self, rcode: ResponseCode, truncated: bool) {
        Self::bump(match rcode {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            ResponseCode::ServFail => &self.servfail,
            _ => &self.other,
        });
        if truncated {
            Self::bump(&self.truncated);
        }
    }
}

/// The running server. Dropping it stops every listener and connection.
pub struct DnsServer {
    addrs: Vec<SocketAddr>,
    counters: Arc<DnsCounters>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// The bound addresses, one per `listen` entry (UDP and TCP share it).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn counters(&self) -> Arc<DnsCounters> {
        self.counters.clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// State shared by every listener task.
pub(super) struct Shared {
    zones: watch::Receiver<Arc<Zones>>,
    pub(super) cfg: DnsConfig,
    pub(super) counters: Arc<DnsCounters>,
    forwards: Arc<Semaphore>,
}

impl Shared {
    /// Forwarding only with upstreams and only for allowed clients (the
    /// list is read only when there are upstreams).
    pub(super) fn opts(&self, tcp: bool, client: IpAddr) -> ReplyOpts {
        ReplyOpts {
            tcp,
            udp_cap: self.cfg.udp_cap,
            forward: !self.cfg.upstreams.is_empty()
                && acl::contains(&self.cfg.forward_allow, client),
        }
    }

    fn zones(&self) -> Arc<Zones> {
        self.zones.borrow().clone()
    }

    /// The zone transfer answering `msg`, if it is an AXFR query from a
    /// `--dns-axfr-allow` client (TCP only); `None` leaves it to [`Self::reply`],
    /// which REFUSES it. Counted once per transfer under its rcode.
    pub(super) fn transfer(&self, msg: &[u8], client: IpAddr) -> Option<Vec<Vec<u8>>> {
        if self.cfg.axfr_allow.is_empty()
            || !acl::contains(&self.cfg.axfr_allow, client)
            || !l4lb_core::dns::axfr::is_axfr(msg)
        {
            return None;
        }
        let (messages, rcode) = l4lb_core::dns::axfr::transfer(&self.zones(), msg);
        self.counters.sent(rcode, false);
        Some(messages)
    }

    /// The reply to one message, forwarding included (TCP's path; UDP
    /// forwards in a task of its own so the socket keeps being read).
    pub(super) async fn reply(&self, msg: &[u8], opts: &ReplyOpts) -> Option<Vec<u8>> {
        match respond(&self.zones(), msg, opts) {
            Reply::Send {
                bytes,
                rcode,
                truncated,
            } => {
                self.counters.sent(rcode, truncated);
                Some(bytes)
            }
            Reply::Drop => {
                DnsCounters::bump(&self.counters.dropped);
                None
            }
            Reply::Forward => match self.forwards.clone().try_acquire_owned() {
                Ok(_permit) => forward_or_servfail(self, msg, opts.tcp).await,
                Err(_) => {
                    DnsCounters::bump(&self.counters.servfail);
                    answer::servfail(msg)
                }
            },
        }
    }
}

/// Binds every listen address (errors here, synchronously: a port in use
/// fails the call) and starts serving on the current tokio runtime. Reads
/// the newest zones from `zones` on every query.
pub fn spawn(cfg: DnsConfig, zones: watch::Receiver<Arc<Zones>>) -> Result<DnsServer> {
    let counters = Arc::new(DnsCounters::default());
    let shared = Arc::new(Shared {
        zones,
        forwards: Arc::new(Semaphore::new(cfg.max_forwards.max(1))),
        counters: counters.clone(),
        cfg,
    });
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for &addr in &shared.cfg.listen {
        let (udp, tcp) = bind_pair(addr)?;
        let local = udp.local_addr()?;
        info!(%local, "DNS listening (UDP and TCP)");
        addrs.push(local);
        tasks.push(tokio::spawn(udp_loop(Arc::new(udp), shared.clone())));
        tasks.push(tokio::spawn(tcp_loop(tcp, shared.clone())));
    }
    Ok(DnsServer {
        addrs,
        counters,
        tasks,
    })
}

/// UDP and TCP on the same address; for port 0, the TCP side takes the port
/// the kernel gave UDP (retried if that TCP port happens to be taken).
/// Bursts of queries overflowed the default receive buffer (~208 KiB) under
/// dnsperf; ask for 4 MiB (the kernel caps it at net.core.rmem_max).
fn grow_receive_buffer(udp: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    // SAFETY: plain setsockopt on a socket we own; failure only keeps the default.
    unsafe {
        libc::setsockopt(
            udp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp =
            std::net::UdpSocket::bind(addr).with_context(|| format!("DNS: binding UDP {addr}"))?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => {
                grow_receive_buffer(&udp);
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one attempt")).with_context(|| format!("DNS: binding TCP {addr}"))
}

async fn udp_loop(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut rrl = Rrl::new(shared.cfg.rrl.clone());
    let mut cache = ReplyCache::default();
    let mut batch = Batch::default();
    let mut replies = Vec::with_capacity(BATCH);
    let fd = sock.as_raw_fd();
    loop {
        let n = match sock.async_io(Interest::READABLE, || batch.recv(fd)).await {
            Ok(n) => n,
            Err(e) => {
                // ICMP errors from earlier sends surface here; never fatal.
                debug!(error = %e, "DNS UDP receive");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        // One snapshot per batch: a swap is seen by the next batch.
        let zones = shared.zones();
        let hits_before = cache.hits();
        for i in 0..n {
            let got = batch.received(i);
            let Some(peer) = got.peer.filter(|p| p.port() != 0 && !got.truncated) else {
                DnsCounters::bump(&shared.counters.dropped);
                continue;
            };
            let query = batch.query(i);
            // Only what would be answered is rate-limited (respond drops the rest).
            if query.len() >= 12
                && query[2] & 0x80 == 0
                && !rate_allows(&mut rrl, &sock, &shared, query, peer).await
            {
                continue;
            }
            match cache.reply(&zones, query, &shared.opts(false, peer.ip())) {
                Reply::Send {
                    bytes,
                    rcode,
                    truncated,
                } => {
                    shared.counters.sent(rcode, truncated);
                    replies.push((bytes, peer));
                }
                Reply::Drop => DnsCounters::bump(&shared.counters.dropped),
                Reply::Forward => forward_in_background(&sock, &shared, query, peer).await,
            }
        }
        // One shared add per batch, not per reply.
        let hits = cache.hits() - hits_before;
        if hits > 0 {
            shared
                .counters
                .cache_hits
                .fetch_add(hits, Ordering::Relaxed);
        }
        send_all(&sock, &replies).await;
        replies.clear();
    }
}

/// Sends a batch's replies, as many per call as the socket takes; a reply
/// the kernel refuses (an unroutable peer, say) is skipped, not retried.
async fn send_all(sock: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) {
    let fd = sock.as_raw_fd();
    let mut next = 0;
    while next < replies.len() {
        let rest = &replies[next..];
        match sock
            .async_io(Interest::WRITABLE, || udp_batch::send(fd, rest))
            .await
        {
            Ok(sent) => next += sent.max(1),
            Err(e) => {
                debug!(peer = %rest[0].1, error = %e, "DNS UDP send");
                next += 1;
            }
        }
    }
}

/// Applies the rate limit to the answer `peer` is owed: `true` to answer;
/// otherwise nothing or, on a slip, an empty TC reply was sent.
async fn rate_allows(
    rrl: &mut Rrl,
    sock: &UdpSocket,
    shared: &Shared,
    query: &[u8],
    peer: SocketAddr,
) -> bool {
    match rrl.check(peer.ip(), Instant::now().into_std()) {
        Verdict::Send => true,
        Verdict::Drop => {
            DnsCounters::bump(&shared.counters.rrl_dropped);
            false
        }
        Verdict::Slip => {
            DnsCounters::bump(&shared.counters.rrl_slipped);
            if let Some(tc) = answer::slip(query) {
                let _ = sock.send_to(&tc, peer).await;
            }
            false
        }
    }
}

/// Forwards in a task of its own (the socket keeps being read), within the
/// cap on forwards in flight; over it, SERVFAIL at once.
async fn forward_in_background(
    sock: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    query: &[u8],
    peer: SocketAddr,
) {
    let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
        if let Some(b) = answer::servfail(query) {
            DnsCounters::bump(&shared.counters.servfail);
            let _ = sock.send_to(&b, peer).await;
        }
        return;
    };
    let (sock, shared, query) = (sock.clone(), shared.clone(), query.to_vec());
    tokio::spawn(async move {
        let _permit = permit;
        if let Some(bytes) = forward_or_servfail(&shared, &query, false).await
            && let Err(e) = sock.send_to(&bytes, peer).await
        {
            debug!(%peer, error = %e, "DNS UDP send (forwarded)");
        }
    });
}

/// Forwards `query`; the upstream's answer, or a SERVFAIL if none answered.
async fn forward_or_servfail(shared: &Shared, query: &[u8], tcp_client: bool) -> Option<Vec<u8>> {
    DnsCounters::bump(&shared.counters.forwarded);
    let t = shared.cfg.upstream_timeout;
    for &up in &shared.cfg.upstreams {
        match forward_udp(query, up, t).await {
            Some(r) if tcp_client && r[2] & 0x02 != 0 => {
                if let Some(r) = forward_tcp(query, up, t).await {
                    return Some(r);
                }
            }
            Some(r) => return Some(r),
            None => debug!(upstream = %up, "DNS upstream did not answer"),
        }
    }
    DnsCounters::bump(&shared.counters.servfail);
    answer::servfail(query)
}

/// One UDP exchange from a fresh ephemeral socket (a random source port per
/// query), connected so only the upstream's datagrams are read; the first
/// response with the query's id is the answer.
async fn forward_udp(query: &[u8], up: SocketAddr, t: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + t;
    let local: SocketAddr = match up.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await.ok()?;
    sock.connect(up).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = timeout_at(deadline, sock.recv(&mut buf)).await.ok()?.ok()?;
        if is_response_to(&buf[..n], query) {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn forward_tcp(query: &[u8], up: SocketAddr, t: Duration) -> Option<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(up).await.ok()?;
        let len = u16::try_from(query.len()).ok()?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(query);
        s.write_all(&out).await.ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.ok()?;
        is_response_to(&buf, query).then_some(buf)
    };
    timeout(t, exchange).await.ok().flatten()
}

fn is_response_to(resp: &[u8], query: &[u8]) -> bool {
    resp.len() >= 12 && resp[..2] == query[..2] && resp[2] & 0x80 != 0
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeSet;

    use hickory_proto::{
        op::{Edns, Message, MessageType, Query},
        rr::{Name, RData, Record, RecordType, rdata::A},
    };

    use super::*;
    use crate::dns::build_zones;
    use crate::model::{Catalog, TaskRecord};
    use l4lb_core::dns::sample::{REDIS_TASK_ID, redis_catalog};

    pub(crate) const WAIT: Duration = Duration::from_secs(3);

    pub(crate) fn zones_with(instances: u8) -> Arc<Zones> {
        let (mut catalog, published) = redis_catalog();
        let base = TaskRecord::clone(&catalog.tasks[0]);
        let extra = (1..instances).map(|i| {
            Arc::new(TaskRecord {
                task_id: format!("{REDIS_TASK_ID}-{i}").into(),
                task_ips: [format!("127.1.0.{i}").parse().unwrap()].into(),
                // One agent per instance: DC/OS's IP sources answer with the agent.
                agent_ip: Some(format!("127.1.0.{i}").parse().unwrap()),
                ..base.clone()
            })
        });
        catalog.tasks.extend(extra);
        Arc::new(build_zones(&catalog, &published, &ZoneOptions::default()))
    }

    pub(crate) fn start(
        cfg: DnsConfig,
        zones: Arc<Zones>,
    ) -> (DnsServer, SocketAddr, watch::Sender<Arc<Zones>>) {
        let (tx, rx) = watch::channel(zones);
        let cfg = DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..cfg
        };
        let server = spawn(cfg, rx).unwrap();
        let addr = server.local_addrs()[0];
        (server, addr, tx)
    }

    pub(crate) fn query(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(rand::random())
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    pub(crate) async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(bytes, addr).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (n, _) = timeout(wait, s.recv_from(&mut buf)).await.ok()?.ok()?;
        Some(buf[..n].to_vec())
    }

    pub(crate) async fn udp(addr: SocketAddr, m: &Message) -> Message {
        let bytes = udp_raw(addr, &m.to_vec().unwrap(), WAIT)
            .await
            .expect("a UDP reply");
        let r = Message::from_vec(&bytes).unwrap();
        assert_eq!(r.id(), m.id());
        r
    }

    pub(crate) async fn tcp(addr: SocketAddr, m: &Message) -> Message {
        let mut s = TcpStream::connect(addr).await.unwrap();
        tcp_exchange(&mut s, m).await
    }

    /// One length-prefixed query on an open stream and its answer.
    async fn tcp_exchange(s: &mut TcpStream, m: &Message) -> Message {
        let q = m.to_vec().unwrap();
        let mut out = (q.len() as u16).to_be_bytes().to_vec();
        out.extend(q);
        s.write_all(&out).await.unwrap();
        let mut len = [0u8; 2];
        timeout(WAIT, s.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len).into()];
        s.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    }

    #[tokio::test]
    async fn tutorial_a_and_srv() {
        let (server, addr, _tx) = start(DnsConfig::default(), zones_with(1));
        let r = udp(
            addr,
            &query("redis-tutorial.marathon.mesos.", RecordType::A),
        )
        .await;
        assert_eq!(r.message_type(), MessageType::Response);
        assert!(r.authoritative() && r.recursion_desired());
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].ttl(), 60);
        assert_eq!(r.answers()[0].data(), &RData::A(A::new(127, 0, 1, 11)));

        let r = udp(
            addr,
            &query("_redis-tutorial._tcp.marathon.mesos.", RecordType::SRV),
        )
        .await;
        let RData::SRV(srv) = r.answers()[0].data() else {
            panic!("{r:?}")
        };
        assert_eq!((srv.priority(), srv.weight(), srv.port()), (0, 1, 31256));
        let h = crate::dns::names::task_id_hash(REDIS_TASK_ID);
        let canon = format!("redis-tutorial-{h}-s1.marathon.mesos.");
        assert_eq!(srv.target().to_string(), canon);
        assert_eq!(r.additionals().len(), 1);
        assert_eq!(r.additionals()[0].name().to_string(), canon);
        assert_eq!(r.additionals()[0].ttl(), 60);

        let r = udp(
            addr,
            &query("redis.marathon.l4lb.thisdcos.directory.", RecordType::A),
        )
        .await;
        assert_eq!(r.answers()[0].ttl(), 5);
        assert_eq!(r.answers()[0].data(), &RData::A(A::new(11, 22, 130, 195)));
        let c = server.counters().snapshot();
        assert_eq!(c.noerror, 3);
    }

    #[tokio::test]
    async fn negative_answers_case_and_refused() {
        let (server, addr, _tx) = start(DnsConfig::default(), zones_with(1));
        let r = udp(addr, &query("unknown.marathon.mesos.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert!(r.authoritative());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
        let r = udp(
            addr,
            &query("redis-tutorial.marathon.mesos.", RecordType::MX),
        )
        .await;
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
        let r = udp(
            addr,
            &query("REDIS-tutorial.Marathon.MESOS.", RecordType::A),
        )
        .await;
        assert_eq!(r.answers().len(), 1);
        let r = udp(addr, &query("www.example.com.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::Refused);
        let c = server.counters().snapshot();
        assert_eq!((c.nxdomain, c.noerror, c.refused), (1, 2, 1));
    }

    #[tokio::test]
    async fn truncation_then_tcp_and_edns() {
        let (server, addr, _tx) = start(DnsConfig::default(), zones_with(100));
        let q = query("redis-tutorial.marathon.mesos.", RecordType::A);
        let r = udp(addr, &q).await;
        assert!(r.truncated());
        assert!(r.extensions().as_ref().is_none());
        let r = tcp(addr, &q).await;
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 100);
        // EDNS: OPT in the reply, the advertised size honoured (50 × A ≈ 850 B).
        let (_s2, addr2, _tx2) = start(DnsConfig::default(), zones_with(50));
        let mut e = q.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        e.set_edns(edns);
        let r = udp(addr2, &e).await;
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 50);
        assert_eq!(r.extensions().as_ref().map(Edns::max_payload), Some(1232));
        let r = udp(addr2, &q).await;
        assert!(r.truncated(), "no EDNS: 512 bytes");
        assert_eq!(server.counters().snapshot().truncated, 1);
    }

    #[tokio::test]
    async fn garbage_then_good_query() {
        let (server, addr, _tx) = start(DnsConfig::default(), zones_with(1));
        let good = query("redis-tutorial.marathon.mesos.", RecordType::A);
        let mut junk: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 5],
            vec![
                0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
            ], // pointer loop
            vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 70, b'a'], // bad label
            vec![0xab; 4000],
        ];
        junk.extend((0..20).map(|i| (0..(i * 7 + 12)).map(|_| rand::random()).collect()));
        for j in &junk {
            if let Some(r) = udp_raw(addr, j, Duration::from_millis(100)).await {
                let m = Message::from_vec(&r).unwrap();
                assert_ne!(m.response_code(), ResponseCode::NoError, "{j:?}");
            }
            let r = udp(addr, &good).await;
            assert_eq!(r.answers().len(), 1);
        }
        // Garbage over TCP too: the stream stays in sync.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
        assert_eq!(tcp_exchange(&mut s, &good).await.answers().len(), 1);
        let c = server.counters().snapshot();
        assert!(c.formerr + c.dropped >= 5, "{c:?}");
    }

    #[tokio::test]
    async fn zone_swap_is_seen_by_next_query() {
        let (_server, addr, tx) = start(DnsConfig::default(), Arc::new(Zones::default()));
        let q = query("redis-tutorial.marathon.mesos.", RecordType::A);
        assert_eq!(udp(addr, &q).await.response_code(), ResponseCode::ServFail);
        tx.send(zones_with(1)).unwrap();
        assert_eq!(udp(addr, &q).await.answers().len(), 1);
        tx.send(Arc::new(build_zones(
            &Catalog::default(),
            &BTreeSet::new(),
            &ZoneOptions::default(),
        )))
        .unwrap();
        assert_eq!(udp(addr, &q).await.response_code(), ResponseCode::NXDomain);
    }

    /// An upstream on 127.0.0.1 that answers every query with one A record
    /// (`127.9.9.9`), over UDP and TCP.
    pub(crate) async fn stub_upstream() -> (SocketAddr, JoinHandle<()>) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(q.recursion_desired())
                    .set_recursion_available(true)
                    .add_queries(q.queries().iter().cloned());
                let name = q.queries()[0].name().clone();
                r.add_answer(Record::from_rdata(name, 30, RData::A(A::new(127, 9, 9, 9))));
                let _ = udp.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn forwarding_when_configured() {
        let (up, stub) = stub_upstream().await;
        // A dead upstream first: its timeout is spent, then the stub answers.
        let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cfg = DnsConfig {
            upstreams: vec![dead.local_addr().unwrap(), up],
            upstream_timeout: Duration::from_millis(200),
            ..DnsConfig::default()
        };
        let (server, addr, _tx) = start(cfg, zones_with(1));
        let r = udp(addr, &query("www.example.com.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.recursion_available());
        assert_eq!(r.answers()[0].data(), &RData::A(A::new(127, 9, 9, 9)));
        let r = tcp(addr, &query("www.example.org.", RecordType::A)).await;
        assert_eq!(r.answers()[0].data(), &RData::A(A::new(127, 9, 9, 9)));
        // Our zones are never forwarded.
        let r = udp(addr, &query("nope.marathon.mesos.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        let c = server.counters().snapshot();
        assert_eq!((c.forwarded, c.nxdomain, c.servfail), (2, 1, 0));
        // Every upstream silent: SERVFAIL after the timeouts.
        stub.abort();
        let _ = stub.await;
        let r = udp(addr, &query("www.example.net.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        assert_eq!(server.counters().snapshot().servfail, 1);
    }

    #[tokio::test]
    async fn drop_stops_listening() {
        let (server, addr, _tx) = start(DnsConfig::default(), zones_with(1));
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let q = query("redis-tutorial.marathon.mesos.", RecordType::A)
            .to_vec()
            .unwrap();
        assert!(
            udp_raw(addr, &q, Duration::from_millis(200))
                .await
                .is_none()
        );
    }
}
