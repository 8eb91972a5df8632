//! The fuzz targets' view of l4lb: the pure crate (l4lb-core), which needs
//! neither the eBPF build nor the agent's I/O dependencies.
pub use l4lb_core::{config, hosts, model, naming};

pub mod dns;
pub mod marathon;

/// The seed tutorial's app with `instances` tasks and a named VIP (the
/// core's sample: `l4lb_core::dns::sample::redis_instances`).
pub use l4lb_core::dns::sample::redis_instances as sample_catalog;

/// A current-thread runtime with the timer, its clock paused: an open,
/// silent connection times out at once (virtually). Shared by the targets
/// that drive the event stream.
pub fn paused_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    })
}

/// `body` cut into chunks of alternately `sizes[0]` and `sizes[1]` bytes, as
/// a response stream yields them: frames, CRLFs and UTF-8 sequences straddle
/// chunk borders. Shared by the event-stream targets.
pub fn alternating_chunks(body: &[u8], sizes: [usize; 2]) -> Vec<Result<bytes::Bytes, String>> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut k = 0;
    while !rest.is_empty() {
        let (c, r) = rest.split_at(sizes[k % 2].min(rest.len()));
        out.push(Ok(bytes::Bytes::copy_from_slice(c)));
        rest = r;
        k += 1;
    }
    out
}

/// Whether `ip` is in the range named VIPs are given addresses from
/// (`naming::V4_RANGE_*`, `V6_RANGE_*`).
pub fn in_named_range(ip: std::net::IpAddr) -> bool {
    use naming::{V4_RANGE_SIZE, V4_RANGE_START, V6_RANGE_SIZE, V6_RANGE_START};
    match ip {
        std::net::IpAddr::V4(v) => u32::from(v)
            .checked_sub(u32::from(V4_RANGE_START))
            .is_some_and(|off| off < V4_RANGE_SIZE),
        std::net::IpAddr::V6(v) => u128::from(v)
            .checked_sub(u128::from(V6_RANGE_START))
            .is_some_and(|off| off < u128::from(V6_RANGE_SIZE)),
    }
}

/// What every service a source declares keeps, whichever source: a port, a
/// specified address, a named VIP in the named range, backends of its family
/// with a port and a weight of at most `max_weight`.
pub fn assert_service_sane(vip: &model::Vip, spec: &model::ServiceSpec, max_weight: u32) {
    assert_ne!(vip.addr.port(), 0, "{vip}");
    assert!(!vip.addr.ip().is_unspecified(), "{vip}");
    if spec.name.is_some() {
        assert!(in_named_range(vip.addr.ip()), "named {vip} out of range");
    }
    for (b, &w) in &spec.backends {
        assert!(
            model::same_family(vip.addr.ip(), b.ip()),
            "{vip} has backend {b}"
        );
        assert!(w <= max_weight, "{vip}: backend {b} weight {w}");
        assert_ne!(b.port(), 0, "{vip}: backend {b}");
    }
}
