//! Replies remembered per query, so a repeated question costs a hash lookup
//! and a copy instead of a parse, a lookup and an encoding.
//!
//! A reply depends on the query's bytes after its id (flags, the question,
//! EDNS), on how it arrived ([`ReplyOpts`]) and on the zones; the cache is
//! emptied when the zones change. On a hit only the id and the question's
//! letter case (0x20) are the client's own: both are copied from the query
//! into the remembered reply, whose answers point at its question (names
//! the encoder compressed into the question, an SOA's or NS's say, take the
//! asker's case too: the same names, RFC 4343). Answers
//! are shuffled per reply, so each entry keeps [`VARIANTS`] replies and
//! serves one at random. Only NOERROR replies that fit are kept: a flood of
//! made-up names (NXDOMAIN) never reaches the cache. It holds at most
//! [`MAX_ENTRIES`] questions and starts over when full.
use std::{collections::HashMap, sync::Arc};

use hickory_proto::op::ResponseCode;
use rand::Rng;

use super::{
    answer::{Reply, ReplyOpts, respond},
    records::Zones,
};

/// Replies kept per question (each with its own answer order).
pub const VARIANTS: usize = 8;
/// Questions kept at most (a few hundred bytes per reply).
pub const MAX_ENTRIES: usize = 1024;

/// One thread's cache (the UDP loop owns it; no lock).
#[derive(Default)]
pub struct ReplyCache {
    /// The zones the entries were answered from.
    zones: Option<Arc<Zones>>,
    entries: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    key: Vec<u8>,
    hits: u64,
}

impl ReplyCache {
    /// What [`respond`] would reply to `query`, from the cache when it can.
    pub fn reply(&mut self, zones: &Arc<Zones>, query: &[u8], opts: &ReplyOpts) -> Reply {
        if !self.zones.as_ref().is_some_and(|z| Arc::ptr_eq(z, zones)) {
            self.entries.clear();
            self.zones = Some(zones.clone());
        }
        let Some(qname_len) = make_key(query, opts, &mut self.key) else {
            return respond(zones, query, opts);
        };
        if let Some(variants) = self.entries.get(&self.key)
            && variants.len() >= VARIANTS
        {
            self.hits += 1;
            let mut bytes = variants[rand::rng().random_range(0..variants.len())].clone();
            bytes[..2].copy_from_slice(&query[..2]);
            let question = 12..12 + qname_len;
            bytes[question.clone()].copy_from_slice(&query[question]);
            return Reply::Send {
                bytes,
                rcode: ResponseCode::NoError,
                truncated: false,
            };
        }
        let reply = respond(zones, query, opts);
        if let Reply::Send {
            bytes,
            rcode: ResponseCode::NoError,
            truncated: false,
        } = &reply
            && echoes_question(bytes, query, qname_len)
        {
            self.remember(bytes);
        }
        reply
    }

    /// Replies served from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    fn remember(&mut self, bytes: &[u8]) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&self.key) {
            self.entries.clear();
        }
        let variants = self.entries.entry(self.key.clone()).or_default();
        if variants.len() < VARIANTS {
            variants.push(bytes.to_vec());
        }
    }
}

/// The cache key of `query` into `key`: how it arrived, then its bytes after
/// the id with the question's name lower-cased; returns the name's length
/// on the wire. `None` for what the cache leaves alone: not one plain
/// question (a compressed or overlong name, a short message).
fn make_key(query: &[u8], opts: &ReplyOpts, key: &mut Vec<u8>) -> Option<usize> {
    let qdcount = u16::from_be_bytes([*query.get(4)?, *query.get(5)?]);
    if qdcount != 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len & 0xc0 != 0 || at - 12 + len + 1 > 255 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    if query.len() < at + 4 {
        return None;
    }
    key.clear();
    key.extend_from_slice(&opts.udp_cap.to_be_bytes());
    key.extend_from_slice(&[u8::from(opts.tcp), u8::from(opts.forward)]);
    key.extend_from_slice(&query[2..12]);
    key.extend(query[12..at].iter().map(u8::to_ascii_lowercase));
    key.extend_from_slice(&query[at..]);
    Some(at - 12)
}

/// The reply's question is the query's name (any case) at the same place,
/// so a hit can write the client's case over it.
fn echoes_question(reply: &[u8], query: &[u8], qname_len: usize) -> bool {
    let q = 12..12 + qname_len;
    reply.len() >= q.end && reply[q.clone()].eq_ignore_ascii_case(&query[q])
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, sync::Arc};

    use hickory_proto::{
        op::{Message, Query},
        rr::{Name, RecordType},
    };

    use super::*;
    use crate::dns::{ZoneOptions, build_zones, sample::redis_instances};

    /// Five tasks: five A answers per task name, in a random order.
    fn zones() -> Arc<Zones> {
        let (c, published) = redis_instances(5);
        Arc::new(build_zones(&c, &published, &ZoneOptions::default()))
    }

    fn query(id: u16, name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(id)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn bytes(r: Reply) -> Vec<u8> {
        match r {
            Reply::Send { bytes, .. } => bytes,
            other => panic!("{other:?}"),
        }
    }

    /// The reply as a client reads it, answers sorted (their order is random).
    fn read(b: &[u8]) -> (u16, String, Vec<String>) {
        let m = Message::from_vec(b).unwrap();
        let mut answers: Vec<String> = m.answers().iter().map(|r| r.to_string()).collect();
        answers.sort();
        (m.id(), m.queries()[0].name().to_string(), answers)
    }

    #[test]
    fn a_hit_is_the_reply_with_the_clients_id_and_case() {
        let (z, mut cache, opts) = (zones(), ReplyCache::default(), ReplyOpts::default());
        let name = "redis-tutorial.marathon.mesos.";
        for i in 0..VARIANTS as u16 {
            bytes(cache.reply(&z, &query(i, name, RecordType::A), &opts));
        }
        assert_eq!(cache.hits(), 0, "the first replies are made, not copied");
        let q = query(4242, "ReDiS-tUtOrIaL.marathon.MESOS.", RecordType::A);
        let hit = bytes(cache.reply(&z, &q, &opts));
        assert_eq!(cache.hits(), 1);
        let fresh = bytes(respond(&z, &q, &opts));
        assert_eq!(read(&hit), read(&fresh));
        assert_eq!(read(&hit).1, "ReDiS-tUtOrIaL.marathon.MESOS.");
        assert_eq!(hit.len(), fresh.len());
    }

    #[test]
    fn new_zones_empty_it_and_misses_are_not_kept() {
        let (z, mut cache, opts) = (zones(), ReplyCache::default(), ReplyOpts::default());
        let q = query(1, "redis-tutorial.marathon.mesos.", RecordType::A);
        for _ in 0..VARIANTS {
            cache.reply(&z, &q, &opts);
        }
        let other = zones();
        cache.reply(&other, &q, &opts);
        assert_eq!(cache.hits(), 0, "other zones: answered afresh");
        let nx = query(2, "nope.marathon.mesos.", RecordType::A);
        for _ in 0..VARIANTS + 1 {
            let r = cache.reply(&other, &nx, &opts);
            assert!(matches!(
                r,
                Reply::Send {
                    rcode: ResponseCode::NXDomain,
                    ..
                }
            ));
        }
        assert_eq!(cache.hits(), 0, "NXDOMAIN is never cached");
    }

    #[test]
    fn keys_tell_questions_and_arrivals_apart() {
        let opts = ReplyOpts::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let q = query(1, "Redis.Marathon.mesos.", RecordType::A);
        let n = make_key(&q, &opts, &mut a).unwrap();
        assert_eq!(n, "redis.marathon.mesos.".len() + 1);
        make_key(
            &query(9, "redis.marathon.mesos.", RecordType::A),
            &opts,
            &mut b,
        );
        assert_eq!(a, b, "id and case are not part of the key");
        make_key(
            &query(1, "redis.marathon.mesos.", RecordType::SRV),
            &opts,
            &mut b,
        );
        assert_ne!(a, b);
        let tcp = ReplyOpts { tcp: true, ..opts };
        make_key(&q, &tcp, &mut b);
        assert_ne!(a, b);
        let mut compressed = q.clone();
        compressed[12] = 0xc0;
        assert_eq!(make_key(&compressed, &opts, &mut b), None);
        assert_eq!(make_key(&q[..14], &opts, &mut b), None);
    }

    #[test]
    fn answers_keep_varying_from_the_cache() {
        let (z, mut cache, opts) = (zones(), ReplyCache::default(), ReplyOpts::default());
        let q = query(1, "redis-tutorial.marathon.mesos.", RecordType::A);
        let mut orders = BTreeSet::new();
        for _ in 0..200 {
            let b = bytes(cache.reply(&z, &q, &opts));
            let m = Message::from_vec(&b).unwrap();
            orders.insert(
                m.answers()
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>(),
            );
        }
        assert!(cache.hits() > 150);
        let answers = Message::from_vec(&bytes(respond(&z, &q, &opts)))
            .unwrap()
            .answers()
            .len();
        assert!(
            answers > 1 && orders.len() > 1,
            "{answers} answers, {orders:?}"
        );
    }
}
