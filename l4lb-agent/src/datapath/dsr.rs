//! Direct server return (`--xdp-dsr`): the XDP program's flag, and the
//! neighbour entries it needs. In L2 mode XDP sends a packet to the
//! backend's MAC from the node's neighbour table (`bpf_fib_lookup`), which
//! never learns a backend's MAC by itself: the node sends the backend no IP
//! packet. So the agent sends a backend address one empty UDP datagram
//! (discard port 9), which makes the kernel resolve (and later re-confirm)
//! the entry: only on-link backends (`links.rs`), a new one when an apply
//! brings it, all of them every [`REFRESH`] (`upkeep.rs`).
use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use l4lb_common::XDP_F_DSR_L2;
use tokio::sync::watch;
use tracing::debug;

mod links;
mod upkeep;

/// How often the neighbour entries of the backends are refreshed.
pub const REFRESH: Duration = Duration::from_secs(30);
/// The discard service: a datagram here needs no listener to do its job.
const DISCARD_PORT: u16 = 9;

/// `--xdp-dsr`. The variants carry no doc comments on purpose: clap would
/// print them in `--help` as a list, and the flag's own help says what each
/// value means. Encapsulation (IPIP, GUE) would be another variant with its
/// own flag in the XDP config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Dsr {
    #[default]
    Off,
    L2,
}

impl Dsr {
    /// The flag of the XDP config map.
    pub fn flags(self) -> u32 {
        match self {
            Dsr::Off => 0,
            Dsr::L2 => XDP_F_DSR_L2,
        }
    }
}

/// Keeps a neighbour entry for every on-link backend address in `backends`
/// (id → address, as applied), until the sender side closes.
pub fn spawn_neighbour_refresh(mut backends: watch::Receiver<crate::plan::BackendAddrs>) {
    tokio::spawn(async move {
        let mut upkeep = upkeep::Upkeep::default();
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: everything on-link is poked at start.
        let mut periodic = true;
        loop {
            let addrs: BTreeSet<IpAddr> = backends
                .borrow_and_update()
                .values()
                .map(|a| a.ip())
                .collect();
            let links = links::Links::read();
            let on_link = |ip| links.on_link(ip);
            let due = if periodic {
                upkeep.refresh(&addrs, on_link)
            } else {
                upkeep.changed(&addrs, on_link)
            };
            for ip in due {
                if let Err(e) = poke(ip).await {
                    debug!(%ip, "neighbour refresh: {e}");
                }
            }
            periodic = tokio::select! {
                changed = backends.changed() => if changed.is_err() { return } else { false },
                _ = refresh.tick() => true,
            };
        }
    });
}

/// One empty datagram to `ip`'s discard port: the route to it resolves
/// (or re-confirms) the neighbour.
async fn poke(ip: IpAddr) -> std::io::Result<()> {
    let bind: SocketAddr = if ip.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.send_to(&[], (ip, DISCARD_PORT)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_l2_sets_the_flag() {
        assert_eq!(Dsr::Off.flags(), 0);
        assert_eq!(Dsr::L2.flags(), XDP_F_DSR_L2);
        assert_eq!(Dsr::default(), Dsr::Off);
    }
}
