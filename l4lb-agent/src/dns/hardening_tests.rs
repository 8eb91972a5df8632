//! The server under abuse: rate limiting, forwarding only for allowed
//! clients, TCP messages cut short, crowds of idle TCP connections. Clients
//! bind distinct loopback addresses to be distinct clients (and prefixes).
use std::{net::SocketAddr, time::Duration};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream, UdpSocket},
    time::{Instant, sleep, timeout},
};

use super::{
    acl,
    rrl::RrlConfig,
    server::{
        DnsConfig,
        tests::{WAIT, query, start, stub_upstream, zones_with},
    },
};

const NAME: &str = "redis-tutorial.marathon.mesos.";

async fn udp_from(src: &str, addr: SocketAddr, m: &Message, wait: Duration) -> Option<Message> {
    let s = UdpSocket::bind((src, 0)).await.unwrap();
    s.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = timeout(wait, s.recv_from(&mut buf)).await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).unwrap())
}

async fn tcp_from(src: &str, addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(addr).await.unwrap()
}

fn framed(m: &Message) -> Vec<u8> {
    let q = m.to_vec().unwrap();
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend(q);
    out
}

/// One query on an open connection; `None` if the server closed it or did
/// not answer within `wait`.
async fn ask_tcp(s: &mut TcpStream, m: &Message, wait: Duration) -> Option<Message> {
    s.write_all(&framed(m)).await.ok()?;
    let mut len = [0u8; 2];
    timeout(wait, s.read_exact(&mut len)).await.ok()?.ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len).into()];
    s.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

/// The server closed `s`: a read returns end of stream (or a reset).
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(timeout(WAIT, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn rrl_limits_a_flooding_prefix_and_not_others() {
    let cfg = DnsConfig {
        rrl: RrlConfig {
            rps: 10,
            slip: 2,
            exempt: vec![],
        },
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let t0 = Instant::now();
    for _ in 0..200 {
        flood
            .send_to(&query(NAME, RecordType::A).to_vec().unwrap(), addr)
            .await
            .unwrap();
    }
    let (mut full, mut tc) = (0u32, 0u32);
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = timeout(Duration::from_millis(300), flood.recv_from(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.truncated() {
            assert!(m.answers().is_empty() && n <= 64, "a slip is small: {n}");
            tc += 1;
        } else {
            full += 1;
        }
    }
    let refill = (t0.elapsed().as_secs_f64() * 10.0).ceil() as u32;
    assert!((10..=10 + refill).contains(&full), "{full} full answers");
    let c = server.counters().snapshot();
    assert_eq!(c.rrl_dropped + c.rrl_slipped, 200 - u64::from(full));
    assert_eq!(u64::from(tc), c.rrl_slipped);
    assert!(c.rrl_slipped.abs_diff(c.rrl_dropped) <= 1, "{c:?}");
    // Another /24 is answered in full; the flooded one is still limited.
    for _ in 0..5 {
        let r = udp_from("127.0.1.1", addr, &query(NAME, RecordType::A), WAIT).await;
        assert_eq!(r.map(|m| m.answers().len()), Some(1));
    }
}

#[tokio::test]
async fn loopback_is_exempt_from_rrl_by_default() {
    let cfg = DnsConfig {
        rrl: RrlConfig {
            rps: 1,
            ..RrlConfig::default()
        },
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    for _ in 0..20 {
        let r = udp_from("127.0.0.1", addr, &query(NAME, RecordType::A), WAIT).await;
        assert_eq!(r.map(|m| m.answers().len()), Some(1));
    }
    assert_eq!(server.counters().snapshot().rrl_dropped, 0);
}

#[tokio::test]
async fn forwarding_only_for_allowed_clients() {
    let (up, _stub) = stub_upstream().await;
    let cfg = DnsConfig {
        upstreams: vec![up],
        forward_allow: vec![acl::parse_net("127.0.0.1").unwrap()],
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    let outside = query("www.example.com.", RecordType::A);
    let r = udp_from("127.0.0.1", addr, &outside, WAIT).await.unwrap();
    assert_eq!(
        (r.response_code(), r.answers().len()),
        (ResponseCode::NoError, 1)
    );
    let r = udp_from("127.0.0.2", addr, &outside, WAIT).await.unwrap();
    assert_eq!(
        (r.response_code(), r.answers().len()),
        (ResponseCode::Refused, 0)
    );
    let mut s = tcp_from("127.0.0.2", addr).await;
    let r = ask_tcp(&mut s, &outside, WAIT).await.unwrap();
    assert_eq!(r.response_code(), ResponseCode::Refused);
    // Our zones answer everyone.
    let r = udp_from("127.0.0.2", addr, &query(NAME, RecordType::A), WAIT).await;
    assert_eq!(r.map(|m| m.answers().len()), Some(1));
    let c = server.counters().snapshot();
    assert_eq!((c.forwarded, c.refused), (1, 2));
}

#[tokio::test]
async fn tcp_message_cut_short_is_not_answered() {
    let cfg = DnsConfig {
        tcp_message_timeout: Duration::from_millis(200),
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    let whole = framed(&query(NAME, RecordType::A));
    // The stream ends 4 bytes early (half-close: a reply could still go out).
    let mut s = tcp_from("127.0.0.1", addr).await;
    s.write_all(&whole[..whole.len() - 4]).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(closed(&mut s).await, "answered or left open");
    // The stream stalls: closed at the message deadline, not answered.
    let mut s = tcp_from("127.0.0.1", addr).await;
    let t0 = Instant::now();
    s.write_all(&whole[..5]).await.unwrap();
    assert!(closed(&mut s).await);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // One byte a while, each within the idle timeout, still hits the deadline.
    let mut s = tcp_from("127.0.0.1", addr).await;
    let t0 = Instant::now();
    for b in &whole[..whole.len() - 1] {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sleep(Duration::from_millis(30)).await;
    }
    assert!(closed(&mut s).await);
    assert!(t0.elapsed() < Duration::from_secs(3));
    let c = server.counters().snapshot();
    assert_eq!(c.tcp_incomplete, 3, "{c:?}");
    assert_eq!(c.noerror + c.formerr + c.refused, 0, "{c:?}");
    // A whole message on a fresh connection is answered.
    let mut s = tcp_from("127.0.0.1", addr).await;
    assert!(
        ask_tcp(&mut s, &query(NAME, RecordType::A), WAIT)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn idle_crowd_does_not_lock_out_a_newcomer() {
    let cfg = DnsConfig {
        max_tcp_connections: 8,
        max_tcp_per_client: 4,
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    // 12 idle connections from 4 clients: the table (8) fills, then the
    // longest idle ones make room.
    let mut crowd = Vec::new();
    for i in 0..12 {
        crowd.push(tcp_from(&format!("127.0.2.{}", i % 4 + 1), addr).await);
        sleep(Duration::from_millis(5)).await;
    }
    let mut s = tcp_from("127.0.0.1", addr).await;
    let t0 = Instant::now();
    assert!(
        ask_tcp(&mut s, &query(NAME, RecordType::A), WAIT)
            .await
            .is_some()
    );
    assert!(t0.elapsed() < Duration::from_secs(1));
    // The oldest were closed, the newest (and the newcomer) kept.
    assert!(closed(&mut crowd[0]).await);
    let q = query(NAME, RecordType::A);
    assert!(ask_tcp(crowd.last_mut().unwrap(), &q, WAIT).await.is_some());
    assert!(ask_tcp(&mut s, &q, WAIT).await.is_some());
    assert_eq!(server.counters().snapshot().tcp_evicted, 5);
}

#[tokio::test]
async fn one_client_evicts_only_its_own_idle_connections() {
    let cfg = DnsConfig {
        max_tcp_connections: 8,
        max_tcp_per_client: 3,
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    let mut other = tcp_from("127.0.3.9", addr).await;
    sleep(Duration::from_millis(20)).await;
    let mut mine = Vec::new();
    for _ in 0..6 {
        mine.push(tcp_from("127.0.3.1", addr).await);
        sleep(Duration::from_millis(5)).await;
    }
    let q = query(NAME, RecordType::A);
    // The other client's connection, though older, is untouched.
    assert!(ask_tcp(&mut other, &q, WAIT).await.is_some());
    for s in &mut mine[..3] {
        assert!(closed(s).await);
    }
    for s in &mut mine[3..] {
        assert!(ask_tcp(s, &q, WAIT).await.is_some());
    }
    assert_eq!(server.counters().snapshot().tcp_evicted, 3);
}

#[tokio::test]
async fn with_none_idle_a_newcomer_evicts_the_slowest_sender() {
    let cfg = DnsConfig {
        max_tcp_connections: 2,
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    let whole = framed(&query(NAME, RecordType::A));
    let mut slow = Vec::new();
    for i in 1..=2 {
        let mut s = tcp_from(&format!("127.0.4.{i}"), addr).await;
        s.write_all(&whole[..3]).await.unwrap();
        slow.push(s);
        sleep(Duration::from_millis(20)).await;
    }
    let mut s = tcp_from("127.0.4.3", addr).await;
    assert!(
        ask_tcp(&mut s, &query(NAME, RecordType::A), WAIT)
            .await
            .is_some()
    );
    assert!(closed(&mut slow[0]).await, "the longest sender is closed");
    slow[1].write_all(&whole[3..]).await.unwrap();
    let mut len = [0u8; 2];
    timeout(WAIT, slow[1].read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let c = server.counters().snapshot();
    assert_eq!((c.tcp_evicted, c.tcp_refused), (1, 0));
}

#[tokio::test]
async fn a_newcomer_is_refused_only_while_every_connection_is_answered() {
    // An upstream that never answers: forwards stay in flight for 1 s.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = DnsConfig {
        max_tcp_connections: 2,
        upstreams: vec![silent.local_addr().unwrap()],
        upstream_timeout: Duration::from_secs(1),
        ..DnsConfig::default()
    };
    let (server, addr, _tx) = start(cfg, zones_with(1));
    let outside = framed(&query("www.example.com.", RecordType::A));
    let mut waiting = Vec::new();
    for i in 1..=2 {
        let mut s = tcp_from(&format!("127.0.5.{i}"), addr).await;
        s.write_all(&outside).await.unwrap();
        waiting.push(s);
    }
    sleep(Duration::from_millis(100)).await;
    let mut late = tcp_from("127.0.5.3", addr).await;
    assert!(closed(&mut late).await);
    assert_eq!(server.counters().snapshot().tcp_refused, 1);
    // Both get their SERVFAIL; then there is room again.
    for s in &mut waiting {
        let mut len = [0u8; 2];
        timeout(WAIT, s.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
    }
    let mut s = tcp_from("127.0.5.4", addr).await;
    assert!(
        ask_tcp(&mut s, &query(NAME, RecordType::A), WAIT)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_by_the_write_timeout() {
    let cfg = DnsConfig {
        max_tcp_connections: 1,
        tcp_write_timeout: Duration::from_secs(1),
        ..DnsConfig::default()
    };
    // 100 A records: ~1.7 KB per TCP answer.
    let (server, addr, _tx) = start(cfg, zones_with(100));
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.bind("127.0.6.1:0".parse().unwrap()).unwrap();
    let stuck = sock.connect(addr).await.unwrap();
    let (_read_half, mut write_half) = stuck.into_split();
    // Pipelined queries whose answers (MBs) outgrow every socket buffer.
    let q = framed(&query(NAME, RecordType::A));
    let writer = tokio::spawn(async move {
        for _ in 0..5000 {
            if timeout(Duration::from_secs(5), write_half.write_all(&q))
                .await
                .is_err()
            {
                break;
            }
        }
        write_half
    });
    // The server is stuck writing: its only slot is taken, newcomers refused.
    sleep(Duration::from_millis(300)).await;
    let mut probe = tcp_from("127.0.6.2", addr).await;
    assert!(closed(&mut probe).await);
    assert_eq!(server.counters().snapshot().tcp_refused, 1);
    // The write timeout frees the slot for others.
    sleep(Duration::from_millis(1500)).await;
    let mut s = tcp_from("127.0.6.3", addr).await;
    assert!(
        ask_tcp(&mut s, &query(NAME, RecordType::A), WAIT)
            .await
            .is_some()
    );
    writer.abort();
}
