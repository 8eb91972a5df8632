use std::net::IpAddr;

use super::*;
use crate::intern::intern;
use crate::model::Proto;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(port: u16, protos: &[Proto], name: Option<&str>) -> TaskPort {
    TaskPort {
        port,
        protocols: Protocols::new(protos),
        name: name.map(Arc::from),
    }
}

/// Records with every field at an edge: no agent IP, IPv6, many ports,
/// empty strings, non-ASCII ids, each health state, zones or none.
fn edge_records() -> Vec<Arc<TaskRecord>> {
    let app: Arc<str> = Arc::from("/grüppe/ápp");
    let many_ports = (0..40)
        .map(|k| port(30000 + k, &[Proto::Udp, Proto::Tcp], Some(&format!("p{k}"))))
        .collect();
    let records = [
        TaskRecord::default(),
        TaskRecord {
            app_id: app.clone(),
            task_id: "ápp.ünïcode-任务.1".into(),
            framework: Arc::from("marathon"),
            agent_id: Arc::from("a1b2-S3"),
            agent_ip: Some(ip("10.0.0.1")),
            task_ips: vec![ip("9.0.0.1"), ip("fd00::1")].into(),
            ports: vec![port(31000, &[Proto::Tcp], Some("http")), port(0, &[], None)].into(),
            host_ports: true,
            running: true,
            healthy: Some(true),
            in_pod: false,
            zone: Some(Arc::from("zone-a")),
        },
        TaskRecord {
            app_id: app.clone(),
            task_id: "".into(),
            framework: Arc::from(""),
            agent_id: Arc::from(""),
            agent_ip: Some(ip("2001:db8::7")),
            task_ips: Box::default(),
            ports: many_ports,
            host_ports: false,
            running: false,
            healthy: Some(false),
            in_pod: true,
            zone: Some(Arc::from("")),
        },
        TaskRecord {
            app_id: Arc::from("/other"),
            task_id: "other.1".into(),
            agent_id: Arc::from("a1b2-S3"),
            task_ips: vec![ip("fd00::2")].into(),
            healthy: None,
            running: true,
            ..TaskRecord::default()
        },
    ];
    records.into_iter().map(Arc::new).collect()
}

fn round_trip(records: &[Arc<TaskRecord>]) -> Vec<Arc<TaskRecord>> {
    let packed = PackedRecords::pack(records).expect("records to pack");
    let mut out = vec![Arc::new(TaskRecord::default())];
    packed.unpack_into(&mut out).unwrap();
    out.remove(0);
    out
}

#[test]
fn records_unpack_as_they_were_packed_in_order() {
    let records = edge_records();
    assert_eq!(round_trip(&records), records);
}

#[test]
fn no_record_packs_to_nothing() {
    assert!(PackedRecords::pack(&[]).is_none());
}

#[test]
fn many_distinct_shared_strings_use_the_index() {
    // Past the linear table: every task on its own agent and zone.
    let records: Vec<Arc<TaskRecord>> = (0..200)
        .map(|i| {
            Arc::new(TaskRecord {
                app_id: Arc::from("/big"),
                task_id: format!("big.{i}").into(),
                agent_id: Arc::from(format!("agent-S{}", i % 70).as_str()),
                zone: Some(Arc::from(format!("z{}", i % 30).as_str())),
                agent_ip: Some(IpAddr::from([10, 0, (i / 256) as u8, i as u8])),
                ..TaskRecord::default()
            })
        })
        .collect();
    assert_eq!(round_trip(&records), records);
}

#[test]
fn a_task_takes_a_fraction_of_its_record() {
    // The bench's shape: one IP, one named port, the app's strings shared
    // (interned, as a decode makes them).
    let app = intern("/bench/app-00042");
    let records: Vec<Arc<TaskRecord>> = (0..5)
        .map(|i| {
            Arc::new(TaskRecord {
                app_id: app.clone(),
                task_id: format!(
                    "bench_app-00042.instance-6f1c{i:04}-cb38-11e8-a264-2e431fa5cff2._app.1"
                )
                .into(),
                framework: intern("marathon"),
                agent_id: intern(&format!("0a1b2c3d-4e5f-S{i}")),
                agent_ip: Some(IpAddr::from([10, 1, 0, i as u8])),
                task_ips: vec![IpAddr::from([10, 1, 0, i as u8])].into(),
                ports: vec![TaskPort {
                    port: 31000 + i,
                    protocols: Protocols::new(&[Proto::Tcp]),
                    name: Some(intern("http")),
                }]
                .into(),
                running: true,
                ..TaskRecord::default()
            })
        })
        .collect();
    let packed = PackedRecords::pack(&records).unwrap();
    // The shared strings are the records' own (app, framework, port name,
    // five agents), each once; then a task's id, less what it shares with
    // the one before, and ~27 B of the rest (an `Arc`'d record alone is
    // 152 B, before its id, address and port).
    assert_eq!(packed.strings(), 8);
    let ids: usize = records.iter().map(|r| r.task_id.len()).sum();
    let shared = "bench_app-00042.instance-6f1c000".len();
    assert!(
        packed.len() <= ids - 4 * shared + 5 * 30,
        "{} bytes for 5 tasks ({ids} of ids)",
        packed.len()
    );
    assert_eq!(round_trip(&records), records);
}

#[test]
fn a_corrupt_blob_is_an_error_not_a_panic() {
    let records = edge_records();
    let packed = PackedRecords::pack(&records).unwrap();
    let mut out = Vec::new();
    let with = |bytes: Vec<u8>| PackedRecords {
        strings: packed.strings.clone(),
        bytes: bytes.into(),
    };
    for cut in 0..packed.len() {
        let short = with(packed.bytes[..cut].to_vec());
        assert!(short.unpack_into(&mut out).is_err(), "cut at {cut}");
        assert!(out.is_empty(), "nothing appended on an error");
    }
    for at in 0..packed.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bytes = packed.bytes.to_vec();
            bytes[at] ^= flip;
            let _ = with(bytes).unpack_into(&mut out);
            out.clear();
        }
    }
    // A string index past the table; a task id sharing more than the last
    // one has; one sharing half of a character; protocols not a list.
    type Wire<'a> = (
        u32,
        (u32, &'a str),
        u32,
        u32,
        Option<IpAddr>,
        Vec<IpAddr>,
        Vec<(u16, u8, Option<u32>)>,
        u8,
        Option<u32>,
    );
    let task = |app: u32, id: (u32, &'static str), proto: u8| -> Wire<'static> {
        (
            app,
            id,
            0,
            0,
            None,
            Vec::new(),
            vec![(80, proto, None)],
            0,
            None,
        )
    };
    for (tasks, what) in [
        (vec![task(9, (0, "t"), 1)], "index"),
        (vec![task(0, (0, "t"), 1), task(0, (5, "x"), 1)], "prefix"),
        (
            vec![task(0, (0, "é"), 1), task(0, (1, "x"), 1)],
            "half a char",
        ),
        (vec![task(0, (0, "t"), 9)], "protocols"),
    ] {
        let good = PackedRecords {
            strings: vec![Arc::from("/a")].into(),
            bytes: postcard::to_allocvec(&[task(0, (0, "t"), 1)])
                .unwrap()
                .into(),
        };
        assert_eq!(good.unpack_into(&mut out).unwrap(), (), "{what}: the form");
        out.clear();
        let bad = PackedRecords {
            strings: vec![Arc::from("/a")].into(),
            bytes: postcard::to_allocvec(&tasks).unwrap().into(),
        };
        assert!(bad.unpack_into(&mut out).is_err(), "{what}");
        assert!(out.is_empty(), "{what}");
    }
}

#[test]
fn a_catalog_unpacks_in_catalog_order_skipping_a_bad_part() {
    let rec = |app: &str, task: &str, running: bool| {
        Arc::new(TaskRecord {
            app_id: Arc::from(app),
            task_id: task.into(),
            running,
            ..TaskRecord::default()
        })
    };
    let first = [
        rec("/b", "t2", true),
        rec("/a", "t9", true),
        rec("/b", "t1", true),
    ];
    let second = [rec("/b", "t1", false), rec("/b", "t0", true)];
    let pack = |r: &[Arc<TaskRecord>]| Arc::new(PackedRecords::pack(r).unwrap());
    let catalog = Catalog {
        packed: vec![
            pack(&first),
            Arc::new(PackedRecords {
                strings: Box::default(),
                bytes: vec![0xff; 3].into(),
            }),
            pack(&second),
        ],
        ..Catalog::default()
    };
    let (unpacked, skipped) = catalog.unpacked();
    assert_eq!(skipped, 1);
    assert!(unpacked.packed.is_empty());
    let want = [
        rec("/a", "t9", true),
        rec("/b", "t0", true),
        rec("/b", "t1", true), // the first part's, then the second's
        rec("/b", "t1", false),
        rec("/b", "t2", true),
    ];
    assert_eq!(unpacked.tasks, want);
}

#[test]
fn a_part_larger_than_the_scratch_buffer_packs_whole() {
    let records: Vec<Arc<TaskRecord>> = (0..1500)
        .map(|i| {
            Arc::new(TaskRecord {
                app_id: Arc::from("/huge"),
                task_id: format!("{i:08}-huge.instance-6f1c-cb38-11e8").into(),
                agent_id: Arc::from(format!("agent-S{}", i % 300).as_str()),
                ports: vec![port(31000, &[Proto::Tcp], Some("web"))].into(),
                ..TaskRecord::default()
            })
        })
        .collect();
    let packed = PackedRecords::pack(&records).unwrap();
    assert!(packed.len() > 16 << 10, "{} bytes", packed.len());
    assert_eq!(round_trip(&records), records);
    // The scratch buffer still serves a small part after it.
    let small = edge_records();
    assert_eq!(round_trip(&small), small);
}

#[test]
fn equal_strings_at_other_addresses_pack_alike_and_unpack_equal() {
    // Not interned: each record its own copies of the shared strings.
    let records = |n: usize| -> Vec<Arc<TaskRecord>> {
        (0..n)
            .map(|i| {
                Arc::new(TaskRecord {
                    app_id: Arc::from("/copies"),
                    task_id: format!("copies.{i}").into(),
                    agent_id: Arc::from(format!("S{}", i % 3).as_str()),
                    ..TaskRecord::default()
                })
            })
            .collect()
    };
    for n in [5, 40] {
        let (a, b) = (records(n), records(n));
        assert_eq!(round_trip(&a), a);
        assert_eq!(PackedRecords::pack(&a), PackedRecords::pack(&b), "{n}");
    }
}
