//! Which backends the DSR neighbour upkeep pokes: only those on the node's
//! own links (the ones L2 DSR can serve), after an apply only those that
//! were not on-link backends before, and at each refresh all on-link ones.
use std::{collections::BTreeSet, net::IpAddr};

/// The on-link backends poked so far (as of the last apply or refresh).
#[derive(Debug, Default)]
pub struct Upkeep {
    poked: BTreeSet<IpAddr>,
}

impl Upkeep {
    /// After an apply: the on-link backends that are new since the last call.
    /// A backend that leaves and comes back is new again.
    pub fn changed(
        &mut self,
        backends: &BTreeSet<IpAddr>,
        on_link: impl Fn(IpAddr) -> bool,
    ) -> Vec<IpAddr> {
        let now = on_link_set(backends, on_link);
        let new = now.difference(&self.poked).copied().collect();
        self.poked = now;
        new
    }

    /// The periodic refresh: every on-link backend.
    pub fn refresh(
        &mut self,
        backends: &BTreeSet<IpAddr>,
        on_link: impl Fn(IpAddr) -> bool,
    ) -> Vec<IpAddr> {
        self.poked = on_link_set(backends, on_link);
        self.poked.iter().copied().collect()
    }
}

fn on_link_set(backends: &BTreeSet<IpAddr>, on_link: impl Fn(IpAddr) -> bool) -> BTreeSet<IpAddr> {
    backends.iter().copied().filter(|ip| on_link(*ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(a: &[&str]) -> BTreeSet<IpAddr> {
        a.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// The pokes expected, in the order `Upkeep` returns them (sorted).
    fn pokes(a: &[&str]) -> Vec<IpAddr> {
        set(a).into_iter().collect()
    }

    /// 198.18.2.0/24 is "on the link"; everything else is behind a router.
    fn lan(ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [198, 18, 2])
    }

    #[test]
    fn an_apply_that_changes_nothing_pokes_nothing() {
        let mut u = Upkeep::default();
        let b = set(&["198.18.2.2", "198.18.2.3", "198.18.9.9"]);
        assert_eq!(u.changed(&b, lan), pokes(&["198.18.2.2", "198.18.2.3"]));
        assert!(u.changed(&b, lan).is_empty());
        assert!(u.changed(&b, lan).is_empty());
    }

    #[test]
    fn a_new_on_link_backend_is_poked_once_an_off_link_one_never() {
        let mut u = Upkeep::default();
        u.changed(&set(&["198.18.2.2"]), lan);
        let more = set(&["198.18.2.2", "198.18.2.4", "198.19.0.1"]);
        assert_eq!(u.changed(&more, lan), pokes(&["198.18.2.4"]));
        assert!(u.changed(&more, lan).is_empty());
    }

    #[test]
    fn a_backend_that_leaves_and_returns_is_poked_again() {
        let mut u = Upkeep::default();
        u.changed(&set(&["198.18.2.2", "198.18.2.3"]), lan);
        assert!(u.changed(&set(&["198.18.2.2"]), lan).is_empty());
        assert_eq!(
            u.changed(&set(&["198.18.2.2", "198.18.2.3"]), lan),
            pokes(&["198.18.2.3"])
        );
    }

    #[test]
    fn the_refresh_pokes_every_on_link_backend_and_only_those() {
        let mut u = Upkeep::default();
        let b = set(&["198.18.2.2", "198.18.2.3", "198.18.9.9", "fd00::1"]);
        u.changed(&b, lan);
        assert_eq!(u.refresh(&b, lan), pokes(&["198.18.2.2", "198.18.2.3"]));
        // The refresh does not make the next apply poke again.
        assert!(u.changed(&b, lan).is_empty());
    }
}
