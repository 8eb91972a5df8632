//! `--dns-domain`: the Mesos-DNS zone's name (Mesos-DNS's `domain`).
use hickory_proto::rr::Name;

use super::records::DCOS_ZONE;
use crate::naming;

/// Why a `--dns-domain` is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("{0:?} is not a valid DNS name: {1}")]
    Invalid(String, String),
    #[error("{domain:?} clashes with dcos-net's zone {zone} (equal, inside it or containing it)")]
    Clash { domain: String, zone: &'static str },
}

/// A `--dns-domain` (Mesos-DNS's `domain`) checked: a DNS name of one or
/// more labels, lower-cased, without the trailing dot, that neither is, nor
/// sits in, nor contains a dcos-net zone (the zones are never nested).
pub fn mesos_domain(raw: &str) -> Result<String, DomainError> {
    let invalid = |why: &str| DomainError::Invalid(raw.to_owned(), why.to_owned());
    let s = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    let ldh = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !s.split('.').all(ldh) {
        return Err(invalid("labels of letters, digits and inner '-' only"));
    }
    let name = absolute(&s).ok_or_else(|| invalid("too long"))?;
    for zone in [naming::L4LB_ZONE, DCOS_ZONE] {
        let z = absolute(zone).expect("zone names are valid");
        if z.zone_of(&name) || name.zone_of(&z) {
            return Err(DomainError::Clash { domain: s, zone });
        }
    }
    Ok(s)
}

fn absolute(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}
