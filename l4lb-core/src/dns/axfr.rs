//! Zone transfer (AXFR, RFC 5936) of the served zones, the pure part: which
//! messages answer a transfer query. The agent answers it over TCP only and
//! only to `--dns-axfr-allow` clients; everything else keeps the REFUSED that
//! [`answer`](super::answer) gives AXFR/IXFR.
//!
//! A transfer is the apex SOA, every other record of the zone (sorted by
//! owner, then type, then data, so two transfers of one zone are equal), and
//! the SOA again; split into messages of at most [`MESSAGE_BUDGET`] bytes of
//! records, the question only in the first (RFC 5936 §2.2.1).
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::records::{Zone, Zones};

/// Records per message are cut at this many (uncompressed) bytes, well under
/// the 65535 a TCP message may carry.
pub const MESSAGE_BUDGET: usize = 16 * 1024;

/// True if `query` is a well-formed AXFR query (one IN question of type AXFR).
pub fn is_axfr(query: &[u8]) -> bool {
    let Ok(req) = Message::from_vec(query) else {
        return false;
    };
    req.message_type() == MessageType::Query
        && req.op_code() == OpCode::Query
        && req.queries().len() == 1
        && req.queries()[0].query_type() == RecordType::AXFR
        && req.queries()[0].query_class() == DNSClass::IN
}

/// Every record of `zone` in transfer order: SOA, the rest sorted, SOA.
pub fn zone_records(zone: &Zone) -> Vec<Record> {
    let mut out = Vec::with_capacity(zone.record_count() + 1);
    out.push(zone.soa().clone());
    for records in zone.sorted() {
        let mut name: Vec<(u16, Vec<u8>, Record)> = records
            .iter()
            .filter(|r| r.record_type() != RecordType::SOA)
            .map(|r| {
                let data = r.data().to_bytes().unwrap_or_default();
                (u16::from(r.record_type()), data, r)
            })
            .collect();
        name.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out.extend(name.into_iter().map(|(_, _, r)| r));
    }
    out.push(zone.soa().clone());
    out
}

/// The transfer answering `query` (an AXFR query, see [`is_axfr`]): the
/// messages and their rcode. A name that is not one of our zone apexes gets
/// one NOTAUTH message (as BIND answers a zone it does not serve); zones not
/// loaded yet, SERVFAIL.
pub fn transfer(zones: &Zones, query: &[u8]) -> (Vec<Vec<u8>>, ResponseCode) {
    let Ok(req) = Message::from_vec(query) else {
        return (Vec::new(), ResponseCode::FormErr);
    };
    let header = |rcode: ResponseCode, first: bool| {
        let mut m = Message::new();
        m.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(req.recursion_desired())
            .set_response_code(rcode);
        if first {
            m.add_queries(req.queries().iter().cloned());
        }
        m
    };
    let one = |rcode: ResponseCode| {
        let bytes = header(rcode, true).to_vec().unwrap_or_default();
        (vec![bytes], rcode)
    };
    let Some(q) = req.queries().first() else {
        return one(ResponseCode::FormErr);
    };
    let qname = LowerName::new(q.name());
    let Some(zone) = zones.zones().iter().find(|z| *z.origin() == qname) else {
        return one(match zones.is_loaded() {
            true => ResponseCode::NotAuth,
            false => ResponseCode::ServFail,
        });
    };
    let mut messages = Vec::new();
    let mut current = header(ResponseCode::NoError, true);
    current.set_authoritative(true);
    let mut size = 0usize;
    for r in zone_records(zone) {
        let len = r.to_bytes().map(|b| b.len()).unwrap_or(0);
        if size > 0 && size + len > MESSAGE_BUDGET {
            let full = std::mem::replace(&mut current, header(ResponseCode::NoError, false));
            messages.push(full.to_vec().unwrap_or_default());
            current.set_authoritative(true);
            size = 0;
        }
        size += len;
        current.add_answer(r);
    }
    messages.push(current.to_vec().unwrap_or_default());
    (messages, ResponseCode::NoError)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RData};

    use super::*;
    use crate::dns::records::{ZoneOptions, build_zones};
    use crate::dns::sample::redis_catalog;
    use crate::model::{Catalog, TaskRecord};

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn answers(msgs: &[Vec<u8>]) -> Vec<Record> {
        msgs.iter()
            .flat_map(|m| Message::from_vec(m).unwrap().answers().to_vec())
            .collect()
    }

    #[test]
    fn detects_axfr() {
        assert!(is_axfr(&query("mesos.", RecordType::AXFR)));
        assert!(!is_axfr(&query("mesos.", RecordType::A)));
        assert!(!is_axfr(&query("mesos.", RecordType::IXFR)));
        assert!(!is_axfr(b"junk"));
    }

    /// RFC 5936 §2.2: SOA first and last, every record in between; what a
    /// DC/OS node's `dig axfr mesos` shows (the "real DC/OS AXFR" the
    /// `.slave` SRV rule follows) has the task A, canonical A and SRVs.
    #[test]
    fn soa_first_and_last_all_records() {
        let (c, p) = redis_catalog();
        let z = build_zones(&c, &p, &ZoneOptions::default());
        let (msgs, rcode) = transfer(&z, &query("MESOS.", RecordType::AXFR));
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(msgs.len(), 1);
        let m = Message::from_vec(&msgs[0]).unwrap();
        assert!(m.authoritative());
        assert_eq!(m.id(), 7);
        let rs = answers(&msgs);
        assert_eq!(rs.first().unwrap().record_type(), RecordType::SOA);
        assert_eq!(rs.last().unwrap().record_type(), RecordType::SOA);
        let mesos = &z.zones()[0];
        assert_eq!(rs.len(), mesos.record_count() + 1);
        assert!(rs.iter().any(|r| r.record_type() == RecordType::NS));
        assert!(
            rs.iter()
                .any(|r| matches!(r.data(), RData::SRV(s) if s.port() == 31256))
        );
        assert!(
            rs.iter()
                .any(|r| r.name().to_ascii() == "redis-tutorial.marathon.mesos.")
        );
        // The l4lb zone: its VIP name.
        let (msgs, _) = transfer(&z, &query("l4lb.thisdcos.directory.", RecordType::AXFR));
        assert!(
            answers(&msgs)
                .iter()
                .any(|r| r.name().to_ascii() == "redis.marathon.l4lb.thisdcos.directory.")
        );
    }

    #[test]
    fn not_a_zone_apex_is_notauth() {
        let (c, p) = redis_catalog();
        let z = build_zones(&c, &p, &ZoneOptions::default());
        for name in ["marathon.mesos.", "example.com."] {
            let (msgs, rcode) = transfer(&z, &query(name, RecordType::AXFR));
            assert_eq!(rcode, ResponseCode::NotAuth, "{name}");
            assert_eq!(msgs.len(), 1);
            assert_eq!(
                Message::from_vec(&msgs[0]).unwrap().response_code(),
                ResponseCode::NotAuth
            );
        }
        let (_, rcode) = transfer(&Zones::default(), &query("mesos.", RecordType::AXFR));
        assert_eq!(rcode, ResponseCode::ServFail);
    }

    /// A large zone goes out in several messages, question only in the first,
    /// every record exactly once, SOA first and last overall.
    #[test]
    fn large_zone_in_several_messages() {
        let (base, _) = redis_catalog();
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let mut t: TaskRecord = (*base.tasks[0]).clone();
            t.app_id = format!("/app-{i}").into();
            t.task_id = format!("app-{i}.instance-{i}._app.1").into();
            t.task_ips = vec![
                format!("127.1.{}.{}", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap(),
            ]
            .into();
            tasks.push(Arc::new(t));
        }
        let c = Catalog {
            tasks,
            ..Default::default()
        };
        let z = build_zones(&c, &Default::default(), &ZoneOptions::default());
        let (msgs, _) = transfer(&z, &query("mesos.", RecordType::AXFR));
        assert!(msgs.len() > 1, "{} messages", msgs.len());
        assert!(msgs.iter().all(|m| m.len() <= usize::from(u16::MAX)));
        for (i, m) in msgs.iter().enumerate() {
            let m = Message::from_vec(m).unwrap();
            assert_eq!(m.queries().len(), usize::from(i == 0));
        }
        let rs = answers(&msgs);
        assert_eq!(rs.len(), z.zones()[0].record_count() + 1);
        assert_eq!(rs[0].record_type(), RecordType::SOA);
        assert_eq!(rs.last().unwrap().record_type(), RecordType::SOA);
    }
}
