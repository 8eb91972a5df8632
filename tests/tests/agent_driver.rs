//! Checks the `Agent` driver against fixtures/fake-agent.sh (no BPF). Its own
//! test binary, because it points L4LB_AGENT_BIN at the fake process-wide.
use std::{fs, os::unix::fs::MetadataExt, time::Duration};

use l4lb_tests::{Agent, Sandbox, require_root};

const ONE: &str = "vips:\n  - vip: 11.0.0.1:80\n    backends: [\"127.0.0.2:80\"]\n";
const TWO: &str = "vips:\n  - vip: 11.0.0.1:80\n    backends: [\"127.0.0.2:80\"]\n  - vip: 11.0.0.2:80\n    backends: [\"127.0.0.3:80\"]\n";

#[test]
fn agent_driver_against_a_fake_agent() {
    require_root();
    // Only test in this binary, so no other thread reads the environment.
    unsafe {
        std::env::set_var(
            "L4LB_AGENT_BIN",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fake-agent.sh"),
        )
    };
    let mut sb = Sandbox::new("fake-agent").unwrap();

    let mut agent = Agent::start(&mut sb, ONE).unwrap();
    let v = agent.wait_vips(1, Duration::from_secs(5)).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    agent.rewrite_config(TWO).unwrap();
    agent.sighup();
    agent.wait_vips(2, Duration::from_secs(5)).unwrap();
    assert!(agent.is_running());

    let log = agent.log();
    let netns_ino = fs::metadata(sb.netns_path()).unwrap().ino();
    assert!(log.contains("RUST_LOG=info,l4lb=debug"), "{log}");
    assert!(
        log.contains(&format!("cgroup={}", sb.cgroup().display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("netns=net:[{netns_ino}]")),
        "agent not in the netns: {log}"
    );

    agent.stop().unwrap();
    assert!(!agent.is_running());
    assert!(agent.log().contains("fake agent: stopping"));
    assert!(
        !sb.pin_root().exists(),
        "teardown did not remove the pin root"
    );

    // A crashing agent is reported at once, with its log.
    let crashing = Agent::start_with_args(&mut sb, ONE, &["--crash"]).unwrap();
    let err = crashing
        .wait_vips(1, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exited") && err.contains("crashing as asked"),
        "{err}"
    );
}
