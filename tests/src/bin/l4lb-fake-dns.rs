//! Test DNS server: `--listen ADDR --zone FILE`. Answers A/AAAA queries over
//! UDP from FILE, re-read at every query so a test can move a name by
//! rewriting it. Each line: `NAME TTL ADDRESS` (`#` starts a comment). A name
//! with no line is NXDOMAIN; a name with lines of the other family only is
//! NOERROR with no answer. Prints `ready` once bound. Ends on SIGTERM.
use std::{
    io::Write,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::Parser;
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata},
};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    zone: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let sock = UdpSocket::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let reply = answer(&query, &args.zone);
        if let Ok(bytes) = reply.to_vec() {
            let _ = sock.send_to(&bytes, from);
        }
    }
}

/// `(name, ttl, address)` lines of the zone file; a bad line is skipped.
fn zone(path: &Path) -> Vec<(Name, u32, IpAddr)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('#').next()?.split_whitespace();
            let name = Name::from_ascii(f.next()?).ok()?;
            let ttl = f.next()?.parse().ok()?;
            let ip = f.next()?.parse().ok()?;
            Some((name, ttl, ip))
        })
        .collect()
}

fn answer(query: &Message, zone_file: &Path) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_queries(query.queries().to_vec());
    let Some(q) = query.queries().first() else {
        reply.set_response_code(ResponseCode::FormErr);
        return reply;
    };
    let lines = zone(zone_file);
    let key = |n: &Name| {
        n.to_lowercase()
            .to_string()
            .trim_end_matches('.')
            .to_owned()
    };
    let asked = key(q.name());
    let known: Vec<&(Name, u32, IpAddr)> =
        lines.iter().filter(|(n, _, _)| key(n) == asked).collect();
    if known.is_empty() {
        reply.set_response_code(ResponseCode::NXDomain);
        return reply;
    }
    for (_, ttl, ip) in known {
        let rdata = match (q.query_type(), ip) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(rdata::A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(rdata::AAAA(*v6)),
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(q.name().clone(), *ttl, rdata));
    }
    reply
}
