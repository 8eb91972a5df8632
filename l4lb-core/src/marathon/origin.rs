//! Who may see the Marathon credentials, where a redirect may lead, and which
//! Marathon is remembered as the leader. Pure decisions (no I/O), so they can
//! be fuzzed; the client applies them.
//!
//! Rules:
//! - the Authorization header only goes to the origins (scheme, host, port)
//!   of the configured `--marathon` URLs;
//! - a redirect to any other origin is REFUSED, not followed without
//!   credentials: a host the operator did not name could answer a forged app
//!   list, so following it would trade a leaked token for a forged table;
//! - a leader (named by `/v2/leader` or by a redirect) is pinned only once it
//!   answered 2xx, and any failure from it drops it: the configured URLs are
//!   tried again.
use url::Url;

/// Redirect hops followed before giving up (non-leader → leader is one).
pub const MAX_REDIRECTS: usize = 5;

/// The origins of the configured URLs: the only ones that see credentials.
#[derive(Clone, Debug)]
pub struct Trusted(Vec<url::Origin>);

impl Trusted {
    pub fn new(urls: &[Url]) -> Trusted {
        Trusted(urls.iter().map(Url::origin).collect())
    }

    /// True if `url`'s scheme, host and port are those of a configured URL.
    pub fn allows(&self, url: &Url) -> bool {
        let o = url.origin();
        o.is_tuple() && self.0.contains(&o)
    }
}

/// Why a redirect is not followed.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
    #[error("{0} without a usable Location")]
    NoLocation(u16),
    #[error("Location {0:?}: {1}")]
    BadLocation(String, String),
    #[error("{0}: would downgrade https to http")]
    Downgrade(Url),
    #[error("{0}: scheme not supported")]
    Scheme(Url),
    /// Credentials stay with the configured origins.
    #[error("{0}: not the origin of a configured --marathon URL; redirect refused")]
    OtherOrigin(Url),
}

/// Where the `hops`-th redirect (status `status`, header `location`) from
/// `from` leads, if it may be followed with the credentials.
pub fn redirect_target(
    from: &Url,
    status: u16,
    location: Option<&[u8]>,
    hops: usize,
    trusted: &Trusted,
) -> Result<Url, Refused> {
    if hops > MAX_REDIRECTS {
        return Err(Refused::TooMany);
    }
    let loc = location
        .and_then(|l| std::str::from_utf8(l).ok())
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(Refused::NoLocation(status))?;
    let next = from
        .join(loc)
        .map_err(|e| Refused::BadLocation(loc.to_owned(), e.to_string()))?;
    match (from.scheme(), next.scheme()) {
        ("https", "http") => return Err(Refused::Downgrade(next)),
        (_, "http" | "https") => {}
        _ => return Err(Refused::Scheme(next)),
    }
    if !trusted.allows(&next) {
        return Err(Refused::OtherOrigin(next));
    }
    Ok(next)
}

/// `url` cut to its root: the base URL of the Marathon serving it.
pub fn root(url: &Url) -> Url {
    let mut r = url.clone();
    r.set_path("/");
    r.set_query(None);
    r.set_fragment(None);
    r
}

/// The leader as far as the client knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leader {
    /// Answered 2xx: tried before the configured URLs.
    pinned: Option<Url>,
    /// Named by `/v2/leader`, not yet confirmed: tried first, pinned on a 2xx.
    candidate: Option<Url>,
    /// Failed while leader: not taken as a candidate again until another
    /// leader is named.
    bad: Option<Url>,
}

impl Leader {
    /// The URL to try before the configured ones, if any.
    pub fn first(&self) -> Option<&Url> {
        self.pinned.as_ref().or(self.candidate.as_ref())
    }

    pub fn pinned(&self) -> Option<&Url> {
        self.pinned.as_ref()
    }

    /// `/v2/leader` named `url` (already checked against [`Trusted`]).
    pub fn named(&mut self, url: Url) {
        if self.bad.as_ref() == Some(&url) {
            return;
        }
        self.bad = None;
        if self.pinned.as_ref() != Some(&url) {
            self.candidate = Some(url);
        }
    }

    /// No leader now (`/v2/leader` answered 404).
    pub fn none(&mut self) {
        self.pinned = None;
        self.candidate = None;
    }

    /// A request to `base` got a 2xx from `answered` (the same URL, or where a
    /// redirect led). Returns the newly pinned leader, if one was.
    pub fn answered(&mut self, base: &Url, answered: &Url) -> Option<Url> {
        let leader = root(answered);
        let is_leader = self.first() == Some(base)
            // A direct Marathon (path `/`) redirecting names the leader;
            // behind a proxy (Admin Router) the proxy routes.
            || (base.path() == "/" && base.origin() != answered.origin());
        if !is_leader || self.pinned.as_ref() == Some(&leader) {
            return None;
        }
        self.candidate = None;
        self.bad = None;
        self.pinned = Some(leader.clone());
        Some(leader)
    }

    /// A request to `base` failed (any way). Forgets it if it was the leader;
    /// true if it was.
    pub fn failed(&mut self, base: &Url) -> bool {
        if self.first() != Some(base) {
            return false;
        }
        self.pinned = None;
        self.candidate = None;
        self.bad = Some(base.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn trusted() -> Trusted {
        Trusted::new(&[u("http://m1:8080/"), u("https://m2/marathon/")])
    }

    #[test]
    fn only_configured_origins_are_trusted() {
        let t = trusted();
        assert!(t.allows(&u("http://m1:8080/v2/apps")));
        assert!(t.allows(&u("https://m2:443/v2/events")));
        assert!(!t.allows(&u("http://m1:8081/")), "other port");
        assert!(!t.allows(&u("https://m1:8080/")), "other scheme");
        assert!(
            !t.allows(&u("http://m2/marathon/")),
            "http for an https URL"
        );
        assert!(!t.allows(&u("http://evil:8080/")));
        assert!(!t.allows(&u("data:text/plain,x")));
    }

    #[test]
    fn redirects_to_other_origins_are_refused() {
        let t = trusted();
        let from = u("http://m1:8080/v2/events?x=1");
        let go = |loc: &str, hops| redirect_target(&from, 307, Some(loc.as_bytes()), hops, &t);
        assert_eq!(
            go("/v2/events", 1).unwrap().as_str(),
            "http://m1:8080/v2/events"
        );
        assert_eq!(
            go("https://m2/v2/apps", 1).unwrap().as_str(),
            "https://m2/v2/apps"
        );
        assert!(matches!(
            go("http://10.9.9.9:8080/v2/events", 1),
            Err(Refused::OtherOrigin(_))
        ));
        assert!(matches!(
            go("//evil/v2/events", 1),
            Err(Refused::OtherOrigin(_))
        ));
        assert!(matches!(go("ftp://m1:8080/", 1), Err(Refused::Scheme(_))));
        assert_eq!(go("/x", MAX_REDIRECTS + 1), Err(Refused::TooMany));
        assert_eq!(
            redirect_target(&from, 302, None, 1, &t),
            Err(Refused::NoLocation(302))
        );
        assert_eq!(
            redirect_target(&from, 302, Some("a b".as_bytes()), 1, &t),
            Err(Refused::NoLocation(302))
        );
        let https = u("https://m2/marathon/v2/apps");
        assert!(matches!(
            redirect_target(&https, 302, Some(b"http://m1:8080/"), 1, &t),
            Err(Refused::Downgrade(_))
        ));
    }

    #[test]
    fn a_leader_is_pinned_only_after_a_2xx_and_dropped_on_failure() {
        let (m1, m2) = (u("http://m1:8080/"), u("http://m2:8080/"));
        let mut l = Leader::default();
        l.named(m2.clone());
        assert_eq!((l.first(), l.pinned()), (Some(&m2), None));
        assert_eq!(
            l.answered(&m2, &u("http://m2:8080/v2/apps")),
            Some(m2.clone())
        );
        assert_eq!(l.pinned(), Some(&m2));
        assert!(l.failed(&m2));
        assert_eq!(l.first(), None);
        // The failed leader named again: ignored until another one is.
        l.named(m2.clone());
        assert_eq!(l.first(), None);
        l.named(m1.clone());
        assert_eq!(l.first(), Some(&m1));
        l.named(m2.clone());
        assert_eq!(l.first(), Some(&m2));
        // A failure of a configured URL that is not the leader changes nothing.
        assert!(!l.failed(&m1));
        assert_eq!(l.first(), Some(&m2));
    }

    #[test]
    fn a_followed_redirect_pins_its_target_once_it_answers() {
        let (m1, m2) = (u("http://m1:8080/"), u("http://m2:8080/"));
        let mut l = Leader::default();
        // m1 answered itself: no leader news.
        assert_eq!(l.answered(&m1, &u("http://m1:8080/v2/apps")), None);
        assert_eq!(
            l.answered(&m1, &u("http://m2:8080/v2/events?a=b")),
            Some(m2.clone())
        );
        assert_eq!(l.pinned(), Some(&m2));
        // Behind a proxy path, a redirect is the proxy's business.
        let mut l = Leader::default();
        let ar = u("https://m/marathon/");
        assert_eq!(l.answered(&ar, &u("https://n/marathon/v2/apps")), None);
    }
}
