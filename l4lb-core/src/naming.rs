//! dcos-net's VIP naming: label → DNS name, `VIP_n` label values → VIP, and
//! the deterministic name → address allocation for named VIPs.
//!
//! Everything here is pure so both sources (static file, Marathon) and the
//! DNS side agree on names and addresses without talking to each other.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU64, Ordering},
};

use sha1::{Digest, Sha1};

#[cfg(test)]
mod peer_fixture_tests;
mod phash2;

/// DNS zone named VIPs live in: `<label>.<framework>.l4lb.thisdcos.directory`.
pub const L4LB_ZONE: &str = "l4lb.thisdcos.directory";

/// First address handed to named IPv4 VIPs (dcos-net's `min_named_ip`).
pub const V4_RANGE_START: Ipv4Addr = Ipv4Addr::new(11, 0, 0, 0);
/// Number of named IPv4 addresses: dcos-net's `max_named_ip - min_named_ip`
/// = 11.255.255.254 − 11.0.0.0, the modulus its `phash2` takes, so addresses
/// run 11.0.0.0 ..= 11.255.255.253.
pub const V4_RANGE_SIZE: u32 = 0xFF_FFFE;
/// First address handed to named IPv6 VIPs (dcos-net's `min_named_ip6`).
pub const V6_RANGE_START: Ipv6Addr = Ipv6Addr::new(0xfd01, 0xc, 0, 0, 0, 0, 0, 0);
/// Number of named IPv6 addresses: fd01:c:: ..= fd01:c::ffff:ffff:ffff:fffe.
/// `max - min` of fd01:c::/64: the modulus dcos-net hashes into.
pub const V6_RANGE_SIZE: u64 = u64::MAX;

/// Why a VIP label value or an allocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error(
        "VIP label {value:?}: missing \":port\" (expected /name:port, name:port, ip:port or [ipv6]:port)"
    )]
    MissingPort { value: String },
    #[error("VIP label {value:?}: port {port:?} is not an integer in 1..=65535")]
    BadPort { value: String, port: String },
    #[error("VIP label {value:?}: {host:?} is neither an IP address nor a VIP name")]
    BadAddress { value: String, host: String },
    #[error("VIP label {value:?}: name {name:?} has no letter or digit, so it has no DNS name")]
    EmptyName { value: String, name: String },
    #[error(
        "VIP label {value:?}: name {name:?} makes a DNS name longer than {MAX_FQDN_LEN} characters"
    )]
    NameTooLong { value: String, name: String },
    #[error("no free {family} VIP address left: {wanted} names for a range of {size} addresses")]
    OutOfAddresses {
        family: Family,
        wanted: usize,
        size: u128,
    },
}

/// dcos-net's label mangling (`mesos_state:label/1`): lower-case; `-`, `_`
/// and `.` become `-`; every other character (including `/`) is dropped;
/// leading and trailing `-` trimmed; at most 63 characters. `None` if nothing
/// is left. `/group/app` → `groupapp`.
///
/// Reproduces dcos-net's truncation quirk too: once 63 characters are reached
/// the trailing `-`s are cut and only letters and digits may fill the space,
/// so the DNS name (and the hash key) match a dcos-net cluster's.
pub fn normalize_label(label: &str) -> Option<String> {
    let mut out = String::with_capacity(label.len().min(63));
    push_label(label, &mut out);
    (!out.is_empty()).then_some(out)
}

/// [`normalize_label`] appended to `out` (nothing if nothing is left): a
/// full read names every VIP label, so no string of its own per piece.
fn push_label(label: &str, out: &mut String) {
    #[derive(PartialEq)]
    enum State {
        Start,
        Middle,
        Terminate,
    }
    let start = out.len();
    let mut state = State::Start;
    for c in label.chars() {
        let c = c.to_ascii_lowercase();
        let allowed = c.is_ascii_lowercase() || c.is_ascii_digit();
        // Only ASCII is pushed: bytes are characters.
        let len = out.len() - start;
        if state == State::Middle && len > 62 {
            trim_trailing_dashes(out, start);
            state = State::Terminate;
        }
        if state == State::Terminate && out.len() - start == 63 {
            break;
        }
        match state {
            State::Start if allowed => {
                out.push(c);
                state = State::Middle;
            }
            State::Middle if matches!(c, '-' | '_' | '.') => out.push('-'),
            State::Middle | State::Terminate if allowed => out.push(c),
            _ => {}
        }
    }
    trim_trailing_dashes(out, start);
}

/// Cuts the `-`s that end `s[start..]`.
fn trim_trailing_dashes(s: &mut String, start: usize) {
    let len = s[start..].trim_end_matches('-').len();
    s.truncate(start + len);
}

/// dcos-net's `mesos_state:domain_frag/1`: split at dots and mangle each
/// piece with [`normalize_label`], so `/api.hello-world` →
/// `api.hello-world` (the name every DC/OS SDK scheduler's API has) and
/// `/group/app` → `groupapp`. `None` if nothing is left.
///
/// One deviation: a piece that mangles to nothing (`/a./b`'s `/`) is dropped;
/// dcos-net keeps it as an empty label, which no DNS name can carry.
pub fn domain_frag(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    push_frag(name, &mut out);
    (!out.is_empty()).then_some(out)
}

/// [`domain_frag`] appended to `out` (nothing if nothing is left).
fn push_frag(name: &str, out: &mut String) {
    let start = out.len();
    for piece in name.split('.') {
        let before = out.len();
        if before > start {
            out.push('.');
        }
        let at = out.len();
        push_label(piece, out);
        if out.len() == at {
            out.truncate(before);
        }
    }
}

/// Longest DNS name in text form (255 octets on the wire).
pub const MAX_FQDN_LEN: usize = 253;

/// The allocator key and DNS prefix of a named VIP, the binary dcos-net
/// hashes: `/redis` + `marathon` → `redis.marathon`, `/api.hello-world` +
/// `marathon` → `api.hello-world.marathon`. `None` if either part has no
/// DNS name or the FQDN would be too long for DNS.
pub fn vip_key(label: &str, framework: &str) -> Option<String> {
    let mut key = String::with_capacity(label.len() + 1 + framework.len());
    push_frag(label, &mut key);
    if key.is_empty() {
        return None;
    }
    key.push('.');
    let at = key.len();
    push_frag(framework, &mut key);
    (key.len() > at && key.len() + 1 + L4LB_ZONE.len() <= MAX_FQDN_LEN).then_some(key)
}

/// `/redis` + `marathon` → `redis.marathon.l4lb.thisdcos.directory`.
pub fn vip_fqdn(label: &str, framework: &str) -> Option<String> {
    Some(format!("{}.{L4LB_ZONE}", vip_key(label, framework)?))
}

/// The VIP half of a `VIP_n` port label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VipName {
    /// The name as written (`/redis`, `redis`): the address is allocated.
    Named(String),
    /// An explicit address.
    Ip(IpAddr),
}

/// A parsed `VIP_n` label value (`/redis:6379`, `1.2.3.4:80`, `[fd01::1]:80`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipLabel {
    pub name: VipName,
    pub port: u16,
}

/// Parses a `VIP_n` label value the way dcos-net does: split at the LAST `:`
/// (so the bare IPv6 form `fd01::1:80` works), the right part is the port
/// (1–65535), the left part an IP address (IPv6 optionally in brackets) or
/// else a name. A name must keep at least one character after
/// [`domain_frag`], or it could not be resolved or hashed, and must fit in a
/// DNS name under the Marathon framework.
pub fn parse_vip_label(value: &str) -> Result<VipLabel, NamingError> {
    parse_vip_label_keyed(value).map(|(label, _)| label)
}

/// [`parse_vip_label`] and, for a name, its [`vip_key`] under the Marathon
/// framework: the check builds it, so a caller keying under that framework
/// need not build it again.
pub fn parse_vip_label_keyed(value: &str) -> Result<(VipLabel, Option<String>), NamingError> {
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| NamingError::MissingPort {
            value: value.to_owned(),
        })?;
    let port = parse_port(port).ok_or_else(|| NamingError::BadPort {
        value: value.to_owned(),
        port: port.to_owned(),
    })?;
    let bad_address = || NamingError::BadAddress {
        value: value.to_owned(),
        host: host.to_owned(),
    };
    let ip = |ip| {
        Ok((
            VipLabel {
                name: VipName::Ip(ip),
                port,
            },
            None,
        ))
    };
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad_address)?;
        ip(IpAddr::V6(inner.parse().map_err(|_| bad_address())?))
    } else if let Ok(addr) = host.parse::<IpAddr>() {
        ip(addr)
    } else if host.contains([':', '[', ']']) {
        // A mangled IPv6 address (`fd01::1` without a port splits into
        // `fd01:` + `1`): refusing beats inventing a VIP named "fd01".
        Err(bad_address())
    } else if let Some(key) = vip_key(host, crate::declare::FRAMEWORK) {
        let name = VipName::Named(host.to_owned());
        Ok((VipLabel { name, port }, Some(key)))
    } else if domain_frag(host).is_none() {
        Err(NamingError::EmptyName {
            value: value.to_owned(),
            name: host.to_owned(),
        })
    } else {
        Err(NamingError::NameTooLong {
            value: value.to_owned(),
            name: host.to_owned(),
        })
    }
}

/// A port: decimal digits only (no sign, no spaces), 1–65535.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Address family of a named VIP's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Where `key`'s probe starts in a pool of `size` addresses, by dcos-net's
/// rules so both give a name the same address: IPv4 is
/// `erlang:phash2(Name, Size)`; IPv6 is SHA-1 of the name read as a 160-bit
/// big-endian integer, mod `size` (`<<Hash:160>> = crypto:hash(sha, Name),
/// Hash rem Qtty`).
fn hash_offset(family: Family, key: &str, size: u128) -> u128 {
    debug_assert!(
        size > 0 && size <= 1 << 64,
        "the fold below needs size <= 2^64"
    );
    match family {
        // `Pool::new` keeps an IPv4 pool within u32.
        Family::V4 => u128::from(phash2::phash2(key.as_bytes(), size as u32)),
        Family::V6 => Sha1::digest(key.as_bytes())
            .iter()
            .fold(0u128, |acc, &b| ((acc << 8) | u128::from(b)) % size),
    }
}

/// One family's address space and who holds what in it.
#[derive(Clone, Debug)]
struct Pool {
    family: Family,
    /// First address, as an integer.
    base: u128,
    /// Number of addresses: offsets are `0..size`.
    size: u128,
    /// Key → offset from `base`.
    by_key: BTreeMap<String, u128>,
}

impl Pool {
    fn new(family: Family, base: IpAddr, size: u128) -> Pool {
        let base = match base {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let max = match family {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        };
        assert!(
            size > 0 && size <= 1 << 64,
            "pool size {size} out of 1..=2^64"
        );
        assert!(size - 1 <= max - base, "pool overflows the address space");
        Pool {
            family,
            base,
            size,
            by_key: BTreeMap::new(),
        }
    }

    fn addr(&self, offset: u128) -> IpAddr {
        let n = self.base + offset;
        match self.family {
            // `Pool::new` keeps `base + size - 1` within u32.
            Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }

    fn allocate(&mut self, keys: &BTreeSet<String>) -> Result<(), NamingError> {
        if keys.len() as u128 > self.size {
            return Err(NamingError::OutOfAddresses {
                family: self.family,
                wanted: keys.len(),
                size: self.size,
            });
        }
        // Stability: names still wanted keep their address, whatever new
        // names hash to. Names no longer wanted are dropped (released).
        // Both lists are in key order: one walk splits them.
        let mut old = std::mem::take(&mut self.by_key).into_iter().peekable();
        let (mut kept, mut fresh) = (Vec::new(), Vec::new());
        for key in keys {
            while old.next_if(|(k, _)| k < key).is_some() {}
            match old.next_if(|(k, _)| k == key) {
                Some(entry) => kept.push(entry),
                None => fresh.push(key),
            }
        }
        let mut taken: TakenSet = kept.iter().map(|&(_, o)| o).collect();
        // Newcomers in sorted order (BTreeSet order), so a batch's result does
        // not depend on the order the names were collected in.
        let fresh = fresh.into_iter().map(|key| {
            // Linear probe; terminates because keys.len() <= size.
            let mut offset = hash_offset(self.family, key, self.size);
            while !taken.insert(offset) {
                offset = (offset + 1) % self.size;
            }
            (key.clone(), offset)
        });
        let fresh: Vec<(String, u128)> = fresh.collect();
        // Two sorted runs: the map is built from them in one pass.
        self.by_key = merge_sorted(kept, fresh).collect();
        Ok(())
    }
}

/// Offsets taken in a pool while it allocates: foldhash, randomly seeded
/// per set, as the plan's and the zones' indexes (SipHash was ~20 % of a
/// first allocation's instructions).
type TakenSet = HashSet<u128, foldhash::fast::RandomState>;

/// Two lists sorted by key, without a key in both, as one sorted sequence.
fn merge_sorted(
    a: Vec<(String, u128)>,
    b: Vec<(String, u128)>,
) -> impl Iterator<Item = (String, u128)> {
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// Hands out named-VIP addresses: the hash of the key (`label.framework`, see
/// [`vip_key`]; `phash2` for IPv4, SHA-1 for IPv6) mod the range size, added
/// to the range start; linear probe on
/// collision, new names in sorted order (so a batch's result does not depend
/// on the order names were found in). A name keeps its address as long as it
/// stays: on collisions, who came first wins, not who sorts first. Keep one
/// allocator for the agent's life so names survive reloads, and give each
/// [`VipAllocator::allocate`] call the complete set of that family's names:
/// names left out are released.
#[derive(Clone, Debug)]
pub struct VipAllocator {
    v4: Pool,
    v6: Pool,
    /// See [`VipAllocator::generation`].
    generation: u64,
}

/// Generations handed out so far, by every allocator.
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed) + 1
}

impl Default for VipAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl VipAllocator {
    /// dcos-net's ranges: 11.0.0.0–11.255.255.253 and fd01:c::/64.
    pub fn new() -> Self {
        Self::with_ranges(
            (V4_RANGE_START, V4_RANGE_SIZE),
            (V6_RANGE_START, V6_RANGE_SIZE),
        )
    }

    /// Custom ranges (tests force collisions with tiny ones).
    /// Panics if a size is 0 or a range runs past the end of its family.
    pub fn with_ranges(v4: (Ipv4Addr, u32), v6: (Ipv6Addr, u64)) -> Self {
        VipAllocator {
            v4: Pool::new(Family::V4, IpAddr::V4(v4.0), u128::from(v4.1)),
            v6: Pool::new(Family::V6, IpAddr::V6(v6.0), u128::from(v6.1)),
            generation: next_generation(),
        }
    }

    /// Changes with every [`VipAllocator::allocate`] that succeeds and is
    /// unique across allocators (a clone shares it until one of the two
    /// allocates): while it is the same, so are the allocations, and a cache
    /// of them (the incremental catalog's) still holds.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn pool(&self, family: Family) -> &Pool {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Makes `keys` exactly the allocated names of `family` and returns their
    /// addresses. On error nothing changes.
    pub fn allocate(
        &mut self,
        family: Family,
        keys: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, IpAddr>, NamingError> {
        match family {
            Family::V4 => self.v4.allocate(keys)?,
            Family::V6 => self.v6.allocate(keys)?,
        }
        self.generation = next_generation();
        Ok(self.allocations(family))
    }

    /// The address `key` holds in `family`, if allocated.
    pub fn get(&self, family: Family, key: &str) -> Option<IpAddr> {
        let pool = self.pool(family);
        pool.by_key.get(key).map(|&o| pool.addr(o))
    }

    /// Every allocated name of `family` and its address.
    pub fn allocations(&self, family: Family) -> BTreeMap<String, IpAddr> {
        let pool = self.pool(family);
        pool.by_key
            .iter()
            .map(|(k, &o)| (k.clone(), pool.addr(o)))
            .collect()
    }

    /// Where `key`'s probe starts: its address unless it collided.
    pub fn hashed_address(&self, family: Family, key: &str) -> IpAddr {
        let pool = self.pool(family);
        pool.addr(hash_offset(family, key, pool.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn normalize_basic() {
        assert_eq!(normalize_label("/redis").as_deref(), Some("redis"));
        assert_eq!(normalize_label("/group/app").as_deref(), Some("groupapp"));
        assert_eq!(normalize_label("/My_App.v2").as_deref(), Some("my-app-v2"));
        assert_eq!(normalize_label("--a--").as_deref(), Some("a"));
        assert_eq!(normalize_label("/_x_/").as_deref(), Some("x"));
        assert_eq!(normalize_label("qux.ipv6").as_deref(), Some("qux-ipv6"));
        assert_eq!(normalize_label("r€dis!").as_deref(), Some("rdis"));
        assert_eq!(normalize_label("/"), None);
        assert_eq!(normalize_label("-._"), None);
        assert_eq!(normalize_label(""), None);
    }

    #[test]
    fn normalize_matches_dcos_net_vectors() {
        // From dcos-net's mesos_state label tests.
        assert_eq!(
            normalize_label("fd%gsf---gs7-f$gs--d7fddg-123").as_deref(),
            Some("fdgsf---gs7-fgs--d7fddg-123")
        );
        assert_eq!(normalize_label("-4abc123").as_deref(), Some("4abc123"));
        assert_eq!(
            normalize_label("89fdgsf---gs7-fgs--d7fddg-").as_deref(),
            Some("89fdgsf---gs7-fgs--d7fddg")
        );
        assert_eq!(
            normalize_label("fd%gsf---gs7-f$gs--d7fddg123456789012345678901234567890123456789-123")
                .as_deref(),
            Some("fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891")
        );
        assert_eq!(
            normalize_label("##fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-")
                .as_deref(),
            Some("fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789")
        );
    }

    #[test]
    fn normalize_caps_at_63() {
        let long = "a".repeat(100);
        assert_eq!(normalize_label(&long).unwrap().len(), 63);
        let dashy = format!("{}-{}", "a".repeat(62), "b".repeat(5));
        let n = normalize_label(&dashy).unwrap();
        assert_eq!(n.len(), 63);
        assert!(n.ends_with('b') && !n.contains('-'));
    }

    #[test]
    fn fqdn() {
        assert_eq!(
            vip_fqdn("/redis", "marathon").as_deref(),
            Some("redis.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(
            vip_fqdn("/group/app", "marathon").as_deref(),
            Some("groupapp.marathon.l4lb.thisdcos.directory")
        );
        assert_eq!(vip_key("/qux", "ipv6").as_deref(), Some("qux.ipv6"));
        assert_eq!(
            vip_key("/api.hello-world", "marathon").as_deref(),
            Some("api.hello-world.marathon")
        );
        assert_eq!(vip_fqdn("/", "marathon"), None);
    }

    #[test]
    fn parse_label_forms() {
        let named = |n: &str, port| VipLabel {
            name: VipName::Named(n.into()),
            port,
        };
        let ipl = |s: &str, port| VipLabel {
            name: VipName::Ip(ip(s)),
            port,
        };
        assert_eq!(parse_vip_label("/redis:6379"), Ok(named("/redis", 6379)));
        assert_eq!(parse_vip_label("redis:1"), Ok(named("redis", 1)));
        assert_eq!(parse_vip_label("/a/b:65535"), Ok(named("/a/b", 65535)));
        assert_eq!(parse_vip_label("1.2.3.4:80"), Ok(ipl("1.2.3.4", 80)));
        assert_eq!(parse_vip_label("[fd01::1]:80"), Ok(ipl("fd01::1", 80)));
        assert_eq!(parse_vip_label("fd01::1:80"), Ok(ipl("fd01::1", 80)));
        assert_eq!(parse_vip_label("::1:80"), Ok(ipl("::1", 80)));
    }

    #[test]
    fn parse_label_errors() {
        let msg = |v: &str| parse_vip_label(v).unwrap_err().to_string();
        for (value, needle) in [
            ("/redis", "missing \":port\""),
            ("/redis:", "port \"\" is not an integer in 1..=65535"),
            ("/redis:0", "port \"0\""),
            (
                "/redis:65536",
                "port \"65536\" is not an integer in 1..=65535",
            ),
            ("/redis:99999999999", "port \"99999999999\""),
            ("/redis:+80", "port \"+80\""),
            ("/redis:http", "port \"http\""),
            (
                "fd01::1",
                "\"fd01:\" is neither an IP address nor a VIP name",
            ),
            ("[1.2.3.4]:80", "\"[1.2.3.4]\" is neither"),
            ("[fd01::1:80", "is neither"),
            ("/:80", "name \"/\" has no letter or digit"),
            (":80", "name \"\" has no letter or digit"),
        ] {
            let m = msg(value);
            assert!(m.contains(needle), "{value:?}: {m}");
            assert!(m.contains(&format!("{value:?}")), "{value:?}: {m}");
        }
    }

    #[test]
    fn ipv6_matches_dcos_net_test() {
        // dcos-net's lookup_vips test: /qux on framework ipv6.
        let key = vip_key("/qux", "ipv6").unwrap();
        let mut a = VipAllocator::new();
        let want = ip("fd01:c::6d6d:9c64:fd19:f251");
        assert_eq!(a.hashed_address(Family::V6, &key), want);
        let got = a.allocate(Family::V6, &set(&[&key])).unwrap();
        assert_eq!(got[&key], want);
        assert_eq!(a.get(Family::V6, &key), Some(want));
    }

    /// dcos-net's dcos_l4lb_lashup_vip_listener_SUITE `lookup_vips`: labels
    /// `/foo` on framework `bar` and `/baz` on `qux` in its TEST range
    /// 11.0.0.0–11.0.0.254 resolve to 11.0.0.37 and 11.0.0.39; when `foo.bar`
    /// goes, `baz.qux` keeps its address.
    #[test]
    fn ipv4_matches_dcos_net_suite() {
        let mut a = VipAllocator::with_ranges(
            (V4_RANGE_START, 0xfe), // max_named_ip - min_named_ip in TEST
            (V6_RANGE_START, V6_RANGE_SIZE),
        );
        let foo = vip_key("/foo", "bar").unwrap();
        let baz = vip_key("/baz", "qux").unwrap();
        let got = a.allocate(Family::V4, &set(&[&foo, &baz])).unwrap();
        assert_eq!(got[&foo], ip("11.0.0.37"));
        assert_eq!(got[&baz], ip("11.0.0.39"));
        let got = a.allocate(Family::V4, &set(&[&baz])).unwrap();
        assert_eq!(got[&baz], ip("11.0.0.39"));
        assert_eq!(a.get(Family::V4, &foo), None);
    }

    /// The production range (11.0.0.0 + phash2(Name, 16#FFFFFE)): what a
    /// dcos-net node gives these names. Pinned: changing the rule would move
    /// every named VIP on upgrade.
    #[test]
    fn ipv4_production_vectors() {
        let mut a = VipAllocator::new();
        let redis = vip_key("/redis", "marathon").unwrap();
        let api = vip_key("/api.hello-world", "marathon").unwrap();
        assert_eq!(api, "api.hello-world.marathon");
        let got = a.allocate(Family::V4, &set(&[&redis, &api])).unwrap();
        assert_eq!(got[&redis], ip("11.202.66.162"));
        assert_eq!(got[&api], ip("11.46.7.245"));
    }

    /// mesos_state's domain_frag: split at dots, each piece mangled alone.
    #[test]
    fn domain_frag_keeps_dots() {
        for (label, want) in [
            ("/api.hello-world", Some("api.hello-world")),
            ("/group/app", Some("groupapp")),
            ("/redis", Some("redis")),
            ("My_App.V2", Some("my-app.v2")),
            ("a..b.", Some("a.b")),
            ("/a./.b", Some("a.b")),
            ("_x_.-y-", Some("x.y")),
            ("./.", None),
            ("", None),
        ] {
            assert_eq!(domain_frag(label).as_deref(), want, "{label:?}");
        }
        assert_eq!(
            vip_fqdn("/api.hello-world", "marathon").as_deref(),
            Some("api.hello-world.marathon.l4lb.thisdcos.directory")
        );
        // Each piece is capped at 63 on its own.
        let long = format!("{}.{}", "a".repeat(70), "b".repeat(70));
        let frag = domain_frag(&long).unwrap();
        assert_eq!(frag, format!("{}.{}", "a".repeat(63), "b".repeat(63)));
    }

    /// The names built in one string equal the ones built piece by piece
    /// (a string per piece, joined, then formatted), for names made at
    /// random of the characters the rules treat apart, long runs included.
    #[test]
    fn names_built_in_place_equal_names_joined_from_pieces() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let frag = |name: &str| {
            let pieces: Vec<String> = name.split('.').filter_map(normalize_label).collect();
            (!pieces.is_empty()).then(|| pieces.join("."))
        };
        let key = |label: &str, framework: &str| {
            let key = format!("{}.{}", frag(label)?, frag(framework)?);
            (key.len() + 1 + L4LB_ZONE.len() <= MAX_FQDN_LEN).then_some(key)
        };
        let chars = ['a', 'Z', '7', '.', '-', '_', '/', '€', ' '];
        let mut rng = StdRng::seed_from_u64(12);
        let (mut named, mut too_long) = (0, 0);
        for _ in 0..20_000 {
            let mut name = String::new();
            for piece in 0..rng.random_range(0..7) {
                if piece > 0 {
                    name.push('.');
                }
                for _ in 0..rng.random_range(0..5) {
                    let c = chars[rng.random_range(0..chars.len())];
                    let run = if rng.random_range(0..3) == 0 { 70 } else { 1 };
                    name.extend(std::iter::repeat_n(c, run));
                }
            }
            assert_eq!(domain_frag(&name), frag(&name), "{name:?}");
            match (frag(&name), key(&name, "marathon")) {
                (Some(_), Some(_)) => named += 1,
                (Some(_), None) => too_long += 1,
                _ => {}
            }
            for framework in ["marathon", "", "./", "Fw.x"] {
                assert_eq!(vip_key(&name, framework), key(&name, framework), "{name:?}");
            }
        }
        assert!(
            named > 5_000 && too_long > 50,
            "{named} named, {too_long} too long"
        );
    }

    #[test]
    fn names_too_long_for_dns_are_refused() {
        // 229 = 253 - ".l4lb.thisdcos.directory"; the key is label.marathon.
        let fits = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(28),
        ]
        .join(".");
        assert_eq!(fits.len() + ".marathon".len(), 229);
        let fqdn = vip_fqdn(&fits, "marathon").unwrap();
        assert_eq!(fqdn.len(), MAX_FQDN_LEN);
        assert!(parse_vip_label(&format!("{fits}:80")).is_ok());
        let over = format!("{fits}d");
        assert_eq!(vip_key(&over, "marathon"), None);
        let e = parse_vip_label(&format!("{over}:80")).unwrap_err();
        assert!(matches!(e, NamingError::NameTooLong { .. }), "{e}");
        assert!(e.to_string().contains("longer than 253"), "{e}");
    }

    #[test]
    fn addresses_stay_in_range() {
        let names: BTreeSet<String> = (0..2000).map(|i| format!("app{i}.marathon")).collect();
        let mut a = VipAllocator::new();
        let v4 = a.allocate(Family::V4, &names).unwrap();
        let v6 = a.allocate(Family::V6, &names).unwrap();
        assert_eq!(v4.len(), names.len());
        let distinct: BTreeSet<_> = v4.values().collect();
        assert_eq!(distinct.len(), names.len());
        for addr in v4.values() {
            let IpAddr::V4(a) = addr else {
                panic!("{addr}")
            };
            assert_eq!(a.octets()[0], 11);
            assert!(*a <= Ipv4Addr::new(11, 255, 255, 253), "{a}");
        }
        for addr in v6.values() {
            let IpAddr::V6(a) = addr else {
                panic!("{addr}")
            };
            assert_eq!(a.segments()[..4], [0xfd01, 0xc, 0, 0]);
        }
    }

    /// A 3-address IPv4 pool at 10.0.0.0, and two names (sorted) that both
    /// hash to its LAST address, so the second one's probe wraps to the first
    /// address. Found by search so the test hard-codes no hash values.
    fn tiny() -> (VipAllocator, String, String) {
        let a = VipAllocator::with_ranges(
            (Ipv4Addr::new(10, 0, 0, 0), 3),
            (V6_RANGE_START, V6_RANGE_SIZE),
        );
        let mut hits = (0..)
            .map(|i| format!("n{i}.marathon"))
            .filter(|k| a.hashed_address(Family::V4, k) == ip("10.0.0.2"));
        let (x, y) = (hits.next().unwrap(), hits.next().unwrap());
        let (x, y) = if x < y { (x, y) } else { (y, x) };
        (a, x, y)
    }

    #[test]
    fn collision_probes_to_next_free_and_wraps() {
        let (mut a, x, y) = tiny();
        let got = a.allocate(Family::V4, &set(&[&y, &x])).unwrap();
        assert_eq!(got[&x], ip("10.0.0.2"));
        assert_eq!(got[&y], ip("10.0.0.0"));
        // A third name hashing anywhere takes the one address left.
        let got = a.allocate(Family::V4, &set(&[&x, &y, "z"])).unwrap();
        assert_eq!(got["z"], ip("10.0.0.1"));
    }

    #[test]
    fn order_independent() {
        let (a, x, y) = tiny();
        let names = [x.as_str(), y.as_str(), "zz.marathon"];
        let fwd: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let rev: BTreeSet<String> = names.iter().rev().map(|s| s.to_string()).collect();
        let r1 = a.clone().allocate(Family::V4, &fwd).unwrap();
        let r2 = a.clone().allocate(Family::V4, &rev).unwrap();
        assert_eq!(r1, r2);
        assert_eq!(r1.values().collect::<BTreeSet<_>>().len(), 3);
    }

    #[test]
    fn stable_while_present_and_released_when_gone() {
        let (mut a, x, y) = tiny();
        a.allocate(Family::V4, &set(&[&x, &y])).unwrap();
        assert_eq!(a.get(Family::V4, &y), Some(ip("10.0.0.0")));
        // `x` leaves: `y` keeps its probed address, `x` is released.
        let got = a.allocate(Family::V4, &set(&[&y])).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&y], ip("10.0.0.0"));
        assert_eq!(a.get(Family::V4, &x), None);
        // `x` returns and takes its freed hashed address; `y` stays put.
        let got = a.allocate(Family::V4, &set(&[&x, &y])).unwrap();
        assert_eq!(got[&x], ip("10.0.0.2"));
        assert_eq!(got[&y], ip("10.0.0.0"));
        // History beats order: if `y` came first it holds the hashed address
        // and `x`, arriving later, probes instead of evicting it.
        let mut b = tiny().0;
        b.allocate(Family::V4, &set(&[&y])).unwrap();
        let got = b.allocate(Family::V4, &set(&[&x, &y])).unwrap();
        assert_eq!(got[&y], ip("10.0.0.2"));
        assert_eq!(got[&x], ip("10.0.0.0"));
        // Families are independent.
        assert!(a.allocations(Family::V6).is_empty());
    }

    #[test]
    fn exhaustion_is_an_error_and_changes_nothing() {
        let (mut a, _, _) = tiny();
        let names: BTreeSet<String> = (0..3).map(|i| format!("w{i}")).collect();
        let got = a.allocate(Family::V4, &names).unwrap();
        let all: BTreeSet<IpAddr> = got.values().copied().collect();
        assert_eq!(
            all,
            [ip("10.0.0.0"), ip("10.0.0.1"), ip("10.0.0.2")]
                .into_iter()
                .collect()
        );
        let mut four = names.clone();
        four.insert("w3".into());
        let err = a.allocate(Family::V4, &four).unwrap_err();
        assert!(
            err.to_string().contains("no free IPv4 VIP address"),
            "{err}"
        );
        assert_eq!(a.allocations(Family::V4), got);
    }
}
