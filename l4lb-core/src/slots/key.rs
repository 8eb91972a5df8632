//! A backend's Maglev key: its address as `SocketAddr`'s `Display` writes it
//! (`10.0.0.1:80`, `[fd00::1]:80`), the text every node hashes and sorts by,
//! so the same backends give the same table on every node and across
//! upgrades. Written on the stack, not in a `String`: a full sync keys
//! ~50,000 members, one allocation and a formatter run each.
use std::{
    fmt::{self, Write},
    net::{SocketAddr, SocketAddrV4},
};

/// The longest text `SocketAddr`'s `Display` writes:
/// `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535`.
const LONGEST: usize = 64;

/// The key's bytes (`AsRef<[u8]>`), equal to `addr.to_string()`'s.
#[derive(Clone)]
pub struct AddrKey {
    len: u8,
    text: [u8; LONGEST],
}

impl AddrKey {
    pub fn of(addr: &SocketAddr) -> AddrKey {
        let mut key = AddrKey {
            len: 0,
            text: [0; LONGEST],
        };
        match addr {
            SocketAddr::V4(a) => key.push_v4(a),
            // IPv6's text (zero runs, embedded IPv4, scope ids) is left to
            // the standard library's formatter, which defines the key.
            SocketAddr::V6(a) => {
                let fits = write!(key, "{a}").is_ok();
                debug_assert!(fits, "a socket address's text fits in {LONGEST} bytes");
            }
        }
        key
    }

    /// `a.b.c.d:port`, as `SocketAddrV4`'s `Display` writes it.
    fn push_v4(&mut self, a: &SocketAddrV4) {
        for (i, octet) in a.ip().octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.push_decimal(u32::from(octet));
        }
        self.push(b':');
        self.push_decimal(u32::from(a.port()));
    }

    fn push_decimal(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[at..] {
            self.push(d);
        }
    }

    /// Callers write at most [`LONGEST`] bytes (a v4 key is at most 21).
    fn push(&mut self, byte: u8) {
        self.text[usize::from(self.len)] = byte;
        self.len += 1;
    }
}

impl Write for AddrKey {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let to = self.text.get_mut(at..at + s.len()).ok_or(fmt::Error)?;
        to.copy_from_slice(s.as_bytes());
        self.len += s.len() as u8;
        Ok(())
    }
}

impl AsRef<[u8]> for AddrKey {
    fn as_ref(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn same_as_display(addr: SocketAddr) {
        assert_eq!(
            AddrKey::of(&addr).as_ref(),
            addr.to_string().as_bytes(),
            "{addr}"
        );
    }

    #[test]
    fn the_edges_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.0.1", "127.1.0.250"] {
            for port in [0, 9, 10, 99, 100, 65535] {
                same_as_display(SocketAddr::new(ip.parse().unwrap(), port));
            }
        }
        let longest = SocketAddrV6::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            65535,
            0,
            u32::MAX,
        );
        same_as_display(longest.into());
        for ip in [
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "fd00::1:0:0:1",
            "fd00:0:0:1::",
        ] {
            same_as_display(SocketAddrV6::new(ip.parse().unwrap(), 80, 0, 0).into());
            same_as_display(SocketAddrV6::new(ip.parse().unwrap(), 80, 7, 3).into());
        }
    }

    #[test]
    fn random_addresses_are_written_as_display_writes_them() {
        let mut rng = StdRng::seed_from_u64(16);
        for _ in 0..20_000 {
            let port = rng.random();
            same_as_display(SocketAddr::new(
                Ipv4Addr::from(rng.random::<u32>()).into(),
                port,
            ));
            // Sparse IPv6 groups, so zero runs of every length and place occur.
            let groups: [u16; 8] = std::array::from_fn(|_| match rng.random_range(0..3) {
                0 => 0,
                1 => rng.random_range(0..16),
                _ => rng.random(),
            });
            let scope = if rng.random_bool(0.2) {
                rng.random()
            } else {
                0
            };
            let v6 = SocketAddrV6::new(Ipv6Addr::from(groups), port, 0, scope);
            same_as_display(v6.into());
        }
    }
}
