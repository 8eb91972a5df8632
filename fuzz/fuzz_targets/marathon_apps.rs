//! Arbitrary bytes as a `GET /v2/apps?embed=apps.tasks` body into
//! `marathon::parse::parse_apps` with a fresh allocator (what the Marathon
//! source does on every sync). Checks, beyond "no panic":
//! - every VIP's backends are of the VIP's family, weights are 0 or 1, ports
//!   are 1..=65535, no VIP is the unspecified address;
//! - named VIPs (those with a name) sit in dcos-net's named ranges;
//! - a second sync of the same body with the same allocator gives the same
//!   result (names keep their addresses);
//! - the services do not depend on the order of the apps or of their tasks
//!   (`catalog_from_apps` on the decoded apps, reversed);
//! - the task records come sorted by (app id, task id) and warnings display.
#![no_main]

use l4lb_fuzz::{
    assert_service_sane,
    marathon::{
        apps::{AppsBody, app_from_value},
        parse::{catalog_from_apps, parse_apps},
    },
    naming::VipAllocator,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut alloc = VipAllocator::new();
    let Ok(parsed) = parse_apps(data, &mut alloc) else {
        return;
    };
    for w in &parsed.warnings {
        let _ = w.to_string();
    }
    for (vip, spec) in &parsed.catalog.services.services {
        assert_service_sane(vip, spec, 1);
    }
    let tasks = &parsed.catalog.tasks;
    assert!(
        tasks
            .windows(2)
            .all(|w| (&w[0].app_id, &w[0].task_id) <= (&w[1].app_id, &w[1].task_id)),
        "tasks not sorted"
    );

    // Same body again, same allocator: nothing moves.
    let again = parse_apps(data, &mut alloc).expect("parsed once, parses twice");
    assert_eq!(again, parsed, "second sync differs");

    // Order independence of the services.
    // The streaming decoder skips fields it does not read, so it accepts
    // what a whole-document parse refuses there (a number out of f64's
    // range): the comparison below needs the whole document.
    let Ok(body) = serde_json::from_slice::<AppsBody>(data) else {
        return;
    };
    let mut apps: Vec<_> = body
        .apps
        .iter()
        .filter_map(|v| app_from_value(v).ok())
        .collect();
    apps.reverse();
    for app in &mut apps {
        app.tasks.reverse();
    }
    let reversed = catalog_from_apps(&apps, &mut VipAllocator::new()).expect("same names fit");
    assert_eq!(
        reversed.catalog.services, parsed.catalog.services,
        "services depend on app/task order"
    );
    assert_eq!(reversed.catalog.tasks.len(), tasks.len());
});
