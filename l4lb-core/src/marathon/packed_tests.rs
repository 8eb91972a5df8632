//! A set that keeps its task records packed ([`Keep::Packed`]) gives, once
//! they are unpacked, the records a set keeping them gives, in the same
//! order, with the same services, warnings and agent names, on full reads
//! and on one app re-read; and its kept catalog holds them only packed.
use serde_json::{Value, json};

use super::decode::{AppSet, decode_one_app, decode_one_pod};
use super::keep_tests::{
    FIXTURES, bench_shape, catalogs, fixture_bodies, read, read_set, same_services,
};
use super::parse::Keep;

/// Equal once unpacked; true if the kept catalog carried packed records.
fn same_once_unpacked(full: &mut AppSet, packed: &mut AppSet, what: &str) -> bool {
    assert_eq!((full.keep(), packed.keep()), (Keep::Records, Keep::Packed));
    let mut carried = false;
    for (f, p) in catalogs(full).into_iter().zip(catalogs(packed)) {
        carried |= !p.catalog.packed.is_empty();
        if !p.catalog.packed.is_empty() {
            assert!(
                p.catalog.tasks.is_empty(),
                "{what}: records kept packed only"
            );
        }
        let (unpacked, skipped) = p.catalog.unpacked();
        assert_eq!(skipped, 0, "{what}");
        assert_eq!(unpacked.tasks, f.catalog.tasks, "{what}");
        same_services(&f, &p, what);
    }
    carried
}

fn both(apps: &[u8], pods: Option<&[u8]>, what: &str) -> (AppSet, AppSet, bool) {
    let mut full = read_set(Keep::Records, apps, pods);
    let mut packed = read_set(Keep::Packed, apps, pods);
    let carried = same_once_unpacked(&mut full, &mut packed, what);
    (full, packed, carried)
}

/// The bench's shape with every agent known by address (a part on a named
/// agent makes every catalog a full build, which unpacks the records and
/// packs them again).
fn bench_by_address(apps: usize, tasks: usize) -> Vec<u8> {
    let body = String::from_utf8(bench_shape(apps, tasks)).unwrap();
    let body = body.replace("agent-1.example", "127.1.0.8");
    body.replace("agent-2.example", "127.1.0.9").into_bytes()
}

#[test]
fn packed_records_unpack_to_the_kept_ones() {
    for (name, apps, pods) in fixture_bodies() {
        both(&apps, pods.as_deref(), &name);
    }
    // Named agents make every catalog a full build: it packs again.
    let (_, _, carried) = both(&bench_shape(40, 5), None, "the bench's shape, named agents");
    assert!(carried, "a full build carries the records packed");
    let (_, _, carried) = both(&bench_by_address(40, 5), None, "the bench's shape");
    assert!(carried, "the kept catalog carries the records packed");
}

/// One app re-read (a task gone, a health flip), a pod re-read, then the
/// app gone: the packed set stays equal to the one keeping records.
#[test]
fn one_app_reread_packs_its_records() {
    let first = bench_by_address(12, 5);
    let (mut full, mut packed, carried) = both(&first, None, "first read");
    assert!(carried);
    let v: Value = serde_json::from_slice(&bench_by_address(12, 4)).unwrap();
    let mut app = v["apps"][3].clone();
    app["tasks"][1]["healthCheckResults"] = json!([{"alive": false}]);
    let one = serde_json::to_vec(&json!({ "app": app })).unwrap();
    for set in [&mut full, &mut packed] {
        assert!(set.replace("/app-3", Some(decode_one_app(&one, "/app-3").unwrap())));
    }
    assert!(same_once_unpacked(&mut full, &mut packed, "/app-3 re-read"));

    let pods = read(&format!("{FIXTURES}pods_vips.json"));
    let list: Vec<Value> = serde_json::from_slice(&pods).unwrap();
    let pod = serde_json::to_vec(&list[0]).unwrap();
    let id = list[0]["id"].as_str().unwrap();
    for set in [&mut full, &mut packed] {
        assert!(set.replace_pod(id, Some(decode_one_pod(&pod, id).unwrap())));
    }
    same_once_unpacked(&mut full, &mut packed, "a pod re-read");
    for set in [&mut full, &mut packed] {
        assert!(set.replace("/app-3", None));
    }
    same_once_unpacked(&mut full, &mut packed, "/app-3 gone");
    // A re-read equal to what the packed set holds changes nothing (the
    // same records pack to the same bytes).
    let v: Value = serde_json::from_slice(&first).unwrap();
    let again = serde_json::to_vec(&json!({ "app": v["apps"][5] })).unwrap();
    assert!(!packed.replace("/app-5", Some(decode_one_app(&again, "/app-5").unwrap())));
}
