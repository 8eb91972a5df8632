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
