//! One DNS query in, one reply out: pure and socket-free, so the fuzzer and
//! the unit tests drive exactly the code the server runs.
//!
//! Behaviour (RFC 1034/1035, 2181, 6891, 8020):
//! - Fewer than 12 bytes, or a message with QR set (a response: answering it
//!   could start a loop between servers): dropped, no reply.
//! - Unparsable after the header: FORMERR (header only). Opcode other than
//!   QUERY: NOTIMP. Not exactly one question: FORMERR. EDNS version > 0:
//!   BADVERS. Class other than IN, or AXFR/IXFR: REFUSED.
//! - Outside our zones: REFUSED, or [`Reply::Forward`] when upstreams are
//!   configured. Before the first catalog: SERVFAIL for our zones.
//! - In a zone: `aa` set; the name does not exist → NXDOMAIN with the SOA in
//!   AUTHORITY; exists without the type → NOERROR, empty ANSWER, SOA in
//!   AUTHORITY. Answers shuffled on every query. SRV and NS answers carry
//!   their targets' addresses in ADDITIONAL.
//! - Size: 512 bytes without EDNS, else the client's advertised size within
//!   512..=`udp_cap`; 65535 over TCP. If the reply does not fit, ADDITIONAL is
//!   dropped first (no TC, RFC 2181 §9); if it still does not fit, the reply
//!   is sent with TC and an empty ANSWER so no partial RRset is cached and the
//!   client retries over TCP.
use std::collections::HashSet;

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, LowerName, RData, Record, RecordType},
};
use rand::seq::SliceRandom;

use super::records::{Lookup, Zones};

/// Our EDNS UDP payload size: DNS Flag Day 2020's 1232 avoids fragmentation.
pub const DEFAULT_UDP_CAP: u16 = 1232;
/// Largest UDP reply to a client without EDNS (RFC 1035).
pub const CLASSIC_UDP_SIZE: usize = 512;

/// How a query arrived and what the server may do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyOpts {
    /// Arrived over TCP: replies up to 65535 bytes.
    pub tcp: bool,
    /// Largest UDP reply we send to an EDNS client (and advertise).
    pub udp_cap: u16,
    /// Upstreams are configured: names outside our zones are forwarded
    /// instead of REFUSED.
    pub forward: bool,
}

impl Default for ReplyOpts {
    fn default() -> Self {
        ReplyOpts {
            tcp: false,
            udp_cap: DEFAULT_UDP_CAP,
            forward: false,
        }
    }
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send `bytes` back.
    Send {
        bytes: Vec<u8>,
        rcode: ResponseCode,
        truncated: bool,
    },
    /// Outside our zones and forwarding is on: send the query, as received,
    /// to an upstream and relay its answer.
    Forward,
    /// Send nothing.
    Drop,
}

/// The fuzzing entry point: the reply bytes for `query` received over UDP
/// with our EDNS cap `max_udp`, forwarding off. `None` = no reply.
pub fn answer(zones: &Zones, query: &[u8], max_udp: usize) -> Option<Vec<u8>> {
    let opts = ReplyOpts {
        tcp: false,
        udp_cap: max_udp.clamp(CLASSIC_UDP_SIZE, usize::from(u16::MAX)) as u16,
        forward: false,
    };
    match respond(zones, query, &opts) {
        Reply::Send { bytes, .. } => Some(bytes),
        Reply::Forward | Reply::Drop => None,
    }
}

/// Handles one query (see the module docs for the rules).
pub fn respond(zones: &Zones, query: &[u8], opts: &ReplyOpts) -> Reply {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return Reply::Drop;
    }
    let Ok(req) = Message::from_vec(query) else {
        return header_only(query, ResponseCode::FormErr);
    };
    let mut resp = response_to(&req, opts);
    let limit = size_limit(&req, opts);
    if let Some(rcode) = unanswerable(&req) {
        if rcode == ResponseCode::BADVERS {
            // RFC 6891 §6.1.3: BADVERS, and no question section is needed.
            resp.take_queries();
        }
        return finish(resp.set_response_code(rcode), limit);
    }
    let q = &req.queries()[0];
    let qname = LowerName::new(q.name());
    let (zone, found) = match zones.lookup(&qname) {
        Lookup::NotOurs if !zones.is_loaded() && zones.serves(&qname) => {
            return finish(resp.set_response_code(ResponseCode::ServFail), limit);
        }
        Lookup::NotOurs if opts.forward => return Reply::Forward,
        Lookup::NotOurs => return finish(resp.set_response_code(ResponseCode::Refused), limit),
        Lookup::NxDomain(zone) => (zone, None),
        Lookup::Found(zone, records) => (zone, Some(records)),
    };
    resp.set_authoritative(true);
    let Some(records) = found else {
        resp.add_name_server(zone.soa().clone());
        return finish(resp.set_response_code(ResponseCode::NXDomain), limit);
    };
    // Owner written as asked: keeps the client's 0x20 case pattern.
    let mut answers: Vec<Record> = records.of_type(q.query_type(), q.name()).collect();
    if answers.is_empty() {
        resp.add_name_server(zone.soa().clone());
        return finish(resp.set_response_code(ResponseCode::NoError), limit);
    }
    answers.shuffle(&mut rand::rng());
    let additional = additionals(zones, &answers);
    resp.add_answers(answers).add_additionals(additional);
    finish(resp.set_response_code(ResponseCode::NoError), limit)
}

/// The response's header, question and EDNS record for `req`.
fn response_to(req: &Message, opts: &ReplyOpts) -> Message {
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_checking_disabled(req.checking_disabled())
        .add_queries(req.queries().iter().cloned());
    if req.extensions().as_ref().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(opts.udp_cap.max(CLASSIC_UDP_SIZE as u16));
        resp.set_edns(edns);
    }
    resp
}

/// The error a query gets before any lookup, if it asks what no zone answers.
fn unanswerable(req: &Message) -> Option<ResponseCode> {
    if req.op_code() != OpCode::Query {
        return Some(ResponseCode::NotImp);
    }
    if req.queries().len() != 1 {
        return Some(ResponseCode::FormErr);
    }
    if req.extensions().as_ref().is_some_and(|e| e.version() > 0) {
        return Some(ResponseCode::BADVERS);
    }
    let q = &req.queries()[0];
    let qtype = q.query_type();
    if qtype == RecordType::OPT {
        return Some(ResponseCode::FormErr);
    }
    if q.query_class() != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Some(ResponseCode::Refused);
    }
    None
}

/// The addresses of the SRV and NS targets among `answers`, each target once.
fn additionals(zones: &Zones, answers: &[Record]) -> Vec<Record> {
    let mut additional: Vec<Record> = Vec::new();
    let mut targets = HashSet::new();
    for a in answers {
        let target = match a.data() {
            RData::SRV(s) => s.target(),
            RData::NS(ns) => &ns.0,
            _ => continue,
        };
        let target = LowerName::new(target);
        if targets.insert(target.clone()) {
            additional.extend(zones.addresses(&target));
        }
    }
    additional
}

/// A SERVFAIL for `query` (when no upstream answered a forwarded query).
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    match Message::from_vec(query) {
        Ok(req) => {
            let mut resp = Message::new();
            resp.set_id(req.id())
                .set_message_type(MessageType::Response)
                .set_op_code(req.op_code())
                .set_recursion_desired(req.recursion_desired())
                .set_response_code(ResponseCode::ServFail)
                .add_queries(req.queries().iter().cloned());
            resp.to_vec().ok()
        }
        Err(_) => match header_only(query, ResponseCode::ServFail) {
            Reply::Send { bytes, .. } => Some(bytes),
            _ => None,
        },
    }
}

/// The rate limit's "slip": an empty reply with TC for `query` (header and
/// question only, so never larger than the query), telling a real client to
/// retry over TCP. `None` for what cannot be parsed.
pub fn slip(query: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_truncated(true)
        .add_queries(req.queries().iter().cloned());
    resp.to_vec().ok()
}

fn size_limit(req: &Message, opts: &ReplyOpts) -> usize {
    if opts.tcp {
        return usize::from(u16::MAX);
    }
    match req.extensions().as_ref() {
        Some(e) => usize::from(
            e.max_payload()
                .clamp(CLASSIC_UDP_SIZE as u16, opts.udp_cap.max(512)),
        ),
        None => CLASSIC_UDP_SIZE,
    }
}

/// A 12-byte reply echoing the id, opcode and RD of a query we could not
/// parse beyond its header.
fn header_only(query: &[u8], rcode: ResponseCode) -> Reply {
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&query[0..2]);
    h[2] = 0x80 | (query[2] & 0x79); // QR, opcode, RD
    h[3] = rcode.low() & 0x0f;
    Reply::Send {
        bytes: h.to_vec(),
        rcode,
        truncated: false,
    }
}

/// Encodes within `limit`: drop ADDITIONAL first, then send TC with an empty
/// ANSWER (and no AUTHORITY).
fn finish(resp: &mut Message, limit: usize) -> Reply {
    let rcode = resp.response_code();
    let fits = |m: &Message, truncated: bool| {
        m.to_vec()
            .ok()
            .filter(|b| b.len() <= limit)
            .map(|bytes| Reply::Send {
                bytes,
                rcode,
                truncated,
            })
    };
    if let Some(r) = fits(resp, false) {
        return r;
    }
    if !resp.additionals().is_empty() {
        resp.additionals_mut().clear();
        if let Some(r) = fits(resp, false) {
            return r;
        }
    }
    let mut tc = resp.truncate();
    if let Some(r) = fits(&tc, true) {
        return r;
    }
    // Not even the question fits (or cannot be encoded): no data at all.
    tc.take_queries();
    match tc.to_vec() {
        Ok(bytes) => Reply::Send {
            bytes,
            rcode,
            truncated: true,
        },
        Err(_) => Reply::Drop,
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, sync::Arc, time::Instant};

    use hickory_proto::{
        op::Query,
        rr::{Name, rdata::A},
    };
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::dns::records::{
        ZoneOptions, build_zones,
        tests::{REDIS_TASK_ID, redis_catalog},
    };
    use crate::model::TaskRecord;

    fn zones() -> Zones {
        let (catalog, published) = redis_catalog();
        build_zones(&catalog, &published, &ZoneOptions::default())
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    fn ask(z: &Zones, m: &Message, opts: &ReplyOpts) -> (Message, Reply) {
        let reply = respond(z, &m.to_vec().unwrap(), opts);
        let Reply::Send { bytes, .. } = &reply else {
            panic!("no reply: {reply:?}")
        };
        (Message::from_vec(bytes).unwrap(), reply)
    }

    fn udp() -> ReplyOpts {
        ReplyOpts::default()
    }

    #[test]
    fn slip_is_an_empty_truncated_reply_no_larger_than_the_query() {
        let mut q = query("redis-tutorial.marathon.mesos.", RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let bytes = q.to_vec().unwrap();
        let tc = slip(&bytes).unwrap();
        assert!(tc.len() <= bytes.len(), "{} > {}", tc.len(), bytes.len());
        let r = Message::from_vec(&tc).unwrap();
        assert_eq!((r.id(), r.message_type()), (4242, MessageType::Response));
        assert!(r.truncated() && r.recursion_desired());
        assert_eq!(r.queries(), q.queries());
        assert!(r.answers().is_empty() && r.additionals().is_empty());
        assert_eq!(slip(&[0xff; 5]), None);
    }

    #[test]
    fn a_and_srv() {
        let z = zones();
        let (r, _) = ask(
            &z,
            &query("redis-tutorial.marathon.mesos.", RecordType::A),
            &udp(),
        );
        assert_eq!(r.id(), 4242);
        assert!(r.authoritative() && r.recursion_desired() && !r.recursion_available());
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].ttl(), 60);
        assert_eq!(r.answers()[0].data(), &RData::A(A::new(127, 0, 1, 11)));

        let (r, _) = ask(
            &z,
            &query("_redis-tutorial._tcp.marathon.mesos.", RecordType::SRV),
            &udp(),
        );
        assert_eq!(r.answers().len(), 1);
        let RData::SRV(srv) = r.answers()[0].data() else {
            panic!()
        };
        let h = crate::dns::names::task_id_hash(REDIS_TASK_ID);
        let canon = format!("redis-tutorial-{h}-s1.marathon.mesos.");
        assert_eq!(srv.target().to_string(), canon);
        assert_eq!(r.additionals().len(), 1);
        assert_eq!(r.additionals()[0].name().to_string(), canon);
    }

    #[test]
    fn negative_answers() {
        let z = zones();
        let (r, _) = ask(&z, &query("nope.marathon.mesos.", RecordType::A), &udp());
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert!(r.authoritative());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
        let (r, _) = ask(
            &z,
            &query("redis-tutorial.marathon.mesos.", RecordType::AAAA),
            &udp(),
        );
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
        let (r, _) = ask(&z, &query("example.com.", RecordType::A), &udp());
        assert_eq!(r.response_code(), ResponseCode::Refused);
        assert!(!r.authoritative());
        let q = query("example.com.", RecordType::A).to_vec().unwrap();
        let fwd = ReplyOpts {
            forward: true,
            ..udp()
        };
        assert_eq!(respond(&z, &q, &fwd), Reply::Forward);
        // Before the first catalog: SERVFAIL for our zones, REFUSED elsewhere.
        let empty = Zones::default();
        let (r, _) = ask(
            &empty,
            &query("redis.marathon.mesos.", RecordType::A),
            &udp(),
        );
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        let (r, _) = ask(&empty, &query("example.com.", RecordType::A), &udp());
        assert_eq!(r.response_code(), ResponseCode::Refused);
    }

    #[test]
    fn case_is_kept_and_ignored() {
        let z = zones();
        let (r, _) = ask(
            &z,
            &query("ReDiS-TuToRiAl.MaRaThOn.MeSoS.", RecordType::A),
            &udp(),
        );
        assert_eq!(r.answers().len(), 1);
        assert_eq!(
            r.answers()[0].name().to_ascii(),
            "ReDiS-TuToRiAl.MaRaThOn.MeSoS."
        );
    }

    #[test]
    fn apex_soa_ns_any() {
        let z = zones();
        let (r, _) = ask(&z, &query("mesos.", RecordType::NS), &udp());
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.additionals().len(), 1); // ns1.mesos A 127.0.0.1
        let (r, _) = ask(
            &z,
            &query("l4lb.thisdcos.directory.", RecordType::SOA),
            &udp(),
        );
        assert_eq!(r.answers()[0].record_type(), RecordType::SOA);
        let (r, _) = ask(&z, &query("mesos.", RecordType::ANY), &udp());
        assert_eq!(r.answers().len(), 2);
    }

    #[test]
    fn malformed_and_odd_queries() {
        let z = zones();
        assert_eq!(respond(&z, &[], &udp()), Reply::Drop);
        assert_eq!(respond(&z, &[1; 11], &udp()), Reply::Drop);
        // A response is never answered.
        let mut resp = query("redis-tutorial.marathon.mesos.", RecordType::A);
        resp.set_message_type(MessageType::Response);
        assert_eq!(respond(&z, &resp.to_vec().unwrap(), &udp()), Reply::Drop);
        // Header claims a question that is not there.
        let mut b = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let Reply::Send { bytes, rcode, .. } = respond(&z, &b, &udp()) else {
            panic!()
        };
        assert_eq!(rcode, ResponseCode::FormErr);
        assert_eq!(&bytes[..4], &[0xab, 0xcd, 0x81, 0x01]);
        // Label longer than 63.
        b.push(64);
        b.extend([b'a'; 64]);
        b.extend([0, 0, 1, 0, 1]);
        assert!(matches!(
            respond(&z, &b, &udp()),
            Reply::Send {
                rcode: ResponseCode::FormErr,
                ..
            }
        ));
        // Two questions.
        let mut two = query("redis-tutorial.marathon.mesos.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("mesos.").unwrap(),
            RecordType::SOA,
        ));
        let (r, _) = ask(&z, &two, &udp());
        assert_eq!(r.response_code(), ResponseCode::FormErr);
        // Opcode STATUS / NOTIFY.
        let mut notify = query("mesos.", RecordType::SOA);
        notify.set_op_code(OpCode::Notify);
        let (r, _) = ask(&z, &notify, &udp());
        assert_eq!(r.response_code(), ResponseCode::NotImp);
        // Class CH and zone transfers.
        let mut ch = Message::new();
        let mut cq = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
        cq.set_query_class(DNSClass::CH);
        ch.add_query(cq);
        assert_eq!(
            ask(&z, &ch, &udp()).0.response_code(),
            ResponseCode::Refused
        );
        let (r, _) = ask(&z, &query("mesos.", RecordType::AXFR), &udp());
        assert_eq!(r.response_code(), ResponseCode::Refused);
        // EDNS version 1.
        let mut v1 = query("mesos.", RecordType::SOA);
        let mut e = Edns::new();
        e.set_version(1);
        v1.set_edns(e);
        let (r, _) = ask(&z, &v1, &udp());
        // 16 is BADVERS in an OPT context (hickory parses it as BADSIG).
        assert_eq!(u16::from(r.response_code()), 16);
        assert!(r.extensions().as_ref().is_some());
    }

    fn many_instances(n: u8) -> Zones {
        let (mut catalog, published) = redis_catalog();
        let base = TaskRecord::clone(&catalog.tasks[0]);
        catalog.tasks = (0..n)
            .map(|i| {
                Arc::new(TaskRecord {
                    task_id: format!("redis-tutorial.{i}").into(),
                    task_ips: [format!("127.1.0.{i}").parse().unwrap()].into(),
                    // One agent per instance: DC/OS's IP sources answer with the agent.
                    agent_ip: Some(format!("127.1.0.{i}").parse().unwrap()),
                    ..base.clone()
                })
            })
            .collect();
        build_zones(&catalog, &published, &ZoneOptions::default())
    }

    #[test]
    fn truncation_and_edns_sizes() {
        let z = many_instances(100);
        let q = query("redis-tutorial.marathon.mesos.", RecordType::A);
        // 100 × 16 bytes of A records: too big for 512.
        let (r, reply) = ask(&z, &q, &udp());
        assert!(r.truncated() && r.answers().is_empty());
        assert!(
            matches!(reply, Reply::Send { truncated: true, ref bytes, .. } if bytes.len() <= 512)
        );
        assert_eq!(r.queries().len(), 1);
        // Over TCP: everything.
        let (r, _) = ask(&z, &q, &ReplyOpts { tcp: true, ..udp() });
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 100);
        // EDNS 4096 with our cap 4096: fits; with the default cap 1232: TC.
        let mut e = q.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        e.set_edns(edns);
        let (r, _) = ask(
            &z,
            &e,
            &ReplyOpts {
                udp_cap: 4096,
                ..udp()
            },
        );
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 100);
        assert_eq!(r.extensions().as_ref().unwrap().max_payload(), 4096);
        let (r, _) = ask(&z, &e, &udp());
        assert!(r.truncated());
        assert_eq!(
            r.extensions().as_ref().unwrap().max_payload(),
            DEFAULT_UDP_CAP
        );
        // 50 instances (~850 bytes) fit in the client's 1232 but not in 512.
        let z = many_instances(50);
        let (r, _) = ask(&z, &e, &udp());
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 50);
        // A client advertising less than 512 still gets 512.
        let mut small = q.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(100);
        small.set_edns(edns);
        let (r, _) = ask(&many_instances(20), &small, &udp());
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 20);
    }

    #[test]
    fn additional_dropped_before_tc() {
        // 7 SRV answers fit in 512 bytes (≈ 460); with their 7 A records
        // (≈ 570) they do not.
        let z = many_instances(7);
        let q = query("_redis-tutorial._tcp.marathon.mesos.", RecordType::SRV);
        let (full, reply) = ask(&z, &q, &ReplyOpts { tcp: true, ..udp() });
        assert_eq!(full.additionals().len(), 7);
        assert!(matches!(reply, Reply::Send { ref bytes, .. } if bytes.len() > 512));
        let (r, reply) = ask(&z, &q, &udp());
        assert!(!r.truncated());
        assert_eq!(r.answers().len(), 7);
        assert!(r.additionals().is_empty());
        assert!(matches!(
            reply,
            Reply::Send {
                truncated: false,
                ..
            }
        ));
    }

    #[test]
    fn answers_are_shuffled() {
        let z = many_instances(10);
        let q = query("redis-tutorial.marathon.mesos.", RecordType::A);
        let orders: BTreeSet<Vec<String>> = (0..20)
            .map(|_| {
                let (r, _) = ask(&z, &q, &udp());
                r.answers().iter().map(|a| a.data().to_string()).collect()
            })
            .collect();
        assert!(orders.len() > 1, "20 identical orders of 10 records");
    }

    /// Random and mutated packets through the whole path: never a panic,
    /// every reply parses and fits. Bounded in count and time.
    #[test]
    fn random_and_mutated_packets() {
        let z = many_instances(40);
        let mut rng = StdRng::seed_from_u64(0x1234_5678);
        let seeds: Vec<Vec<u8>> = [
            query("redis-tutorial.marathon.mesos.", RecordType::A),
            query("_redis-tutorial._tcp.marathon.mesos.", RecordType::SRV),
            query("mesos.", RecordType::ANY),
            query("nope.l4lb.thisdcos.directory.", RecordType::A),
        ]
        .iter()
        .map(|m| m.to_vec().unwrap())
        .collect();
        let start = Instant::now();
        let (mut sent, mut tried) = (0, 0);
        for i in 0..100_000 {
            tried += 1;
            let pkt: Vec<u8> = if i % 4 == 0 {
                let len = rng.random_range(0..80);
                (0..len).map(|_| rng.random()).collect()
            } else {
                let mut p = seeds[i % seeds.len()].clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..p.len());
                    match rng.random_range(0..3) {
                        0 => p[at] = rng.random(),
                        1 => p.truncate(at.max(1)),
                        _ => p.insert(at, rng.random()),
                    }
                }
                p
            };
            if let Some(bytes) = answer(&z, &pkt, 1232) {
                sent += 1;
                assert!(bytes.len() <= 1232, "reply of {} bytes", bytes.len());
                let m = Message::from_vec(&bytes).expect("our reply parses");
                assert_eq!(m.message_type(), MessageType::Response);
            }
            if start.elapsed().as_secs() >= 4 {
                break; // a slow (debug, busy) machine: fewer packets, same checks
            }
        }
        assert!(sent * 10 > tried, "only {sent} replies to {tried} packets");
    }
}
