//! `l4lb-agent run` flags for the Marathon source, and the credentials format.
//!
//! Secrets never travel in argv (world-readable in /proc) and never reach a
//! log: they come from a file or the environment, and every type holding one
//! has a hand-written, redacted `Debug`.
use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use url::Url;

use super::{client::ClientConfig, parse::Keep, source::SourceConfig};

/// Environment variable that may hold the credentials (same syntax as the file).
pub const AUTH_ENV: &str = "L4LB_MARATHON_AUTH";

/// Marathon source flags, flattened into `l4lb-agent run`. Without `--marathon`
/// the source is off.
#[derive(clap::Args, Clone, Debug)]
pub struct MarathonArgs {
    /// Marathon base URL(s), comma-separated or repeated (`http://m1:8080,http://m2:8080`,
    /// or `https://leader.mesos/marathon` behind DC/OS Admin Router). Tried in turn: a
    /// refused connection, a timeout or a 5xx moves to the next. Only their origins (scheme,
    /// host, port) see the credentials: a redirect elsewhere is refused, so list every
    /// Marathon instance. Credentials in the URL are refused: use --marathon-auth-file.
    #[arg(long = "marathon", value_name = "URL", value_delimiter = ',', value_parser = UrlArg::parse)]
    pub marathon: Vec<UrlArg>,

    /// File holding the Marathon credentials: one line (blank lines and `#` comments are
    /// ignored), either `token=<ACS token>` (DC/OS: sent as `Authorization: token=…`),
    /// `basic=<user>:<password>` (HTTP Basic), or bare: a line with a `:` is
    /// `<user>:<password>`, one without is an ACS token. Re-read when Marathon answers
    /// 401, so a refreshed token is picked up. Without this file the environment variable
    /// L4LB_MARATHON_AUTH is used (same syntax); the file wins when both are set.
    #[arg(long, value_name = "PATH")]
    pub marathon_auth_file: Option<PathBuf>,

    /// Carrier for L4LB_MARATHON_AUTH only: clap reads the variable, never prints its
    /// value; given on the command line it is refused (argv is public).
    #[arg(
        long = "marathon-auth",
        env = AUTH_ENV,
        hide = true,
        hide_env_values = true,
        value_parser = SecretArg::parse
    )]
    pub marathon_auth: Option<SecretArg>,

    /// Extra PEM root certificate(s) trusted for https Marathon URLs (e.g. the DC/OS CA
    /// bundle), on top of the built-in web PKI roots.
    #[arg(long, value_name = "PATH")]
    pub marathon_ca_file: Option<PathBuf>,

    /// Per-request limit: connect plus complete response. For the event stream it bounds
    /// connect plus response headers only.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub marathon_timeout_ms: u64,

    /// Full re-read of /v2/apps at this period even without events: the safety net for a
    /// lost event. 60 s bounds how stale the table can get if events are lost.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub marathon_resync_secs: u64,

    /// Silence on the event stream (not a single byte, heartbeats included) after which it
    /// is declared dead and reconnected. Marathon writes a heartbeat line every 10 s
    /// (Jetty's EventSourceServlet; 5 s in its akka-http variant), so 60 s is several
    /// missed heartbeats plus room for a JVM pause, and notices a half-open connection 5×
    /// sooner than marathon-lb's 300 s.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub marathon_idle_secs: u64,

    /// Events arriving within this window after the first one are served by one re-read
    /// (a deployment emits a burst of status and health events together).
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub marathon_debounce_ms: u64,

    /// Largest Marathon response body read (the full app list with its tasks): past it
    /// the read fails and the table stays (the default holds 10,000 apps of 5 tasks
    /// with room to spare: BENCHMARKS.md). Error bodies are read 64 KiB at most
    /// whatever this says.
    #[arg(long, value_name = "BYTES", default_value_t = super::client::DEFAULT_MAX_BODY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(4u64 << 30)))]
    pub marathon_max_body_bytes: usize,

    /// Largest event-stream line, and event (all its lines until the blank line that
    /// ends it): past it the stream is dropped and reconnected, and the apps re-read.
    #[arg(long, value_name = "BYTES", default_value_t = super::events::DEFAULT_MAX_EVENT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(1u64 << 30)))]
    pub marathon_max_event_bytes: usize,

    /// Each period between full re-reads (--marathon-resync-secs) is cut by a random
    /// 0..PCT percent, drawn anew each time, so the agents of a fleet (often started
    /// together) do not all re-read the full app list at once; the period stays the
    /// upper bound. 0: exact periods.
    #[arg(long, value_name = "PCT", default_value_t = 20,
          value_parser = clap::value_parser!(u8).range(0..=50))]
    pub marathon_resync_jitter_pct: u8,
}

impl MarathonArgs {
    /// True when `--marathon` was given.
    pub fn enabled(&self) -> bool {
        !self.marathon.is_empty()
    }

    /// Validates the flags and loads the credentials and CA file; `keep` is
    /// what the source keeps of each task (chosen from the agent's other
    /// flags). `Ok(None)` when the source is off. Errors never contain a secret.
    pub fn resolve(&self, keep: Keep) -> Result<Option<SourceConfig>, ArgsError> {
        if !self.enabled() {
            return Ok(None);
        }
        let urls = self
            .marathon
            .iter()
            .map(UrlArg::base_url)
            .collect::<Result<Vec<_>, _>>()?;

        // clap fills `marathon_auth` from argv or from the environment; only
        // the environment is acceptable, even when the file makes it moot.
        if let Some(secret) = &self.marathon_auth
            && std::env::var(AUTH_ENV).ok().as_deref() != Some(secret.0.as_str())
        {
            return Err(ArgsError::AuthOnCommandLine);
        }
        let auth = match (&self.marathon_auth_file, &self.marathon_auth) {
            (Some(path), _) => Some(Credentials::from_file(path)?),
            (None, Some(secret)) => {
                Some(Credentials::parse(&secret.0).map_err(|e| AuthError::In {
                    origin: AUTH_ENV.into(),
                    reason: Box::new(e),
                })?)
            }
            (None, None) => None,
        };

        let ca_pem = match &self.marathon_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| ArgsError::CaFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };

        Ok(Some(SourceConfig {
            client: ClientConfig {
                urls,
                auth,
                auth_file: self.marathon_auth_file.clone(),
                ca_pem,
                request_timeout: Duration::from_millis(self.marathon_timeout_ms),
                idle_timeout: Duration::from_secs(self.marathon_idle_secs),
                max_body: self.marathon_max_body_bytes,
                max_event: self.marathon_max_event_bytes,
            },
            resync: Duration::from_secs(self.marathon_resync_secs),
            debounce: Duration::from_millis(self.marathon_debounce_ms),
            resync_jitter: f64::from(self.marathon_resync_jitter_pct) / 100.0,
            keep,
        }))
    }
}

/// Why the Marathon flags were refused.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("--marathon {shown}: {reason}")]
    BadUrl { shown: String, reason: String },
    #[error(
        "--marathon {shown}: credentials in the URL would be visible in argv; \
         use --marathon-auth-file or {AUTH_ENV}"
    )]
    UrlCredentials { shown: String },
    #[error(
        "--marathon-auth given on the command line: refused (argv is public); \
         use --marathon-auth-file or the environment variable {AUTH_ENV}"
    )]
    AuthOnCommandLine,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("--marathon-ca-file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One `--marathon` value. Parsing never fails in clap (whose error would echo
/// the value, password included); [`MarathonArgs::resolve`] reports problems
/// with the user:password part masked.
#[derive(Clone)]
pub struct UrlArg {
    /// The value with any userinfo replaced by `***`, for messages.
    shown: String,
    parsed: Result<Url, String>,
    had_userinfo: bool,
}

impl UrlArg {
    pub fn parse(raw: &str) -> Result<UrlArg, std::convert::Infallible> {
        let shown = mask_userinfo(raw);
        let parsed = Url::parse(raw.trim()).map_err(|e| e.to_string());
        let had_userinfo = match &parsed {
            Ok(u) => !u.username().is_empty() || u.password().is_some(),
            Err(_) => shown != raw,
        };
        Ok(UrlArg {
            shown,
            parsed,
            had_userinfo,
        })
    }

    /// The base URL requests are joined to: http(s), no credentials, no query,
    /// path ending in `/` (so `v2/apps` joins below an Admin Router prefix).
    pub fn base_url(&self) -> Result<Url, ArgsError> {
        let bad = |reason: &str| ArgsError::BadUrl {
            shown: self.shown.clone(),
            reason: reason.to_owned(),
        };
        if self.had_userinfo {
            return Err(ArgsError::UrlCredentials {
                shown: self.shown.clone(),
            });
        }
        let mut url = self.parsed.clone().map_err(|e| bad(&e))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        if url.host().is_none() {
            return Err(bad("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a base URL takes no query or fragment"));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }
}

impl fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Replaces the userinfo of a URL-looking string by `***`, without parsing it
/// (it may be invalid).
fn mask_userinfo(raw: &str) -> String {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        return raw.to_owned();
    };
    let end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| start + i);
    match raw[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..start], &raw[start + at..]),
        None => raw.to_owned(),
    }
}

/// The raw value of `L4LB_MARATHON_AUTH`, kept unparsed until
/// [`MarathonArgs::resolve`] so a syntax error cannot make clap print it.
#[derive(Clone)]
pub struct SecretArg(String);

impl SecretArg {
    pub fn parse(raw: &str) -> Result<SecretArg, std::convert::Infallible> {
        Ok(SecretArg(raw.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests to Marathon authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// DC/OS ACS token, sent as `Authorization: token=<token>`.
    Token(String),
    /// HTTP Basic (plain Marathon's `--http_credentials`).
    Basic { user: String, password: String },
}

impl Credentials {
    /// Parses the credentials syntax (see `--marathon-auth-file`): one
    /// meaningful line, `token=…`, `basic=user:pass`, bare `user:pass` or a bare
    /// token. Prefixes are case-insensitive.
    pub fn parse(text: &str) -> Result<Credentials, AuthError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines.next().ok_or(AuthError::Empty)?;
        if lines.next().is_some() {
            return Err(AuthError::SeveralLines);
        }
        let prefixed = |p: &str| {
            line.get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &line[p.len()..])
        };
        if let Some(token) = prefixed("token=") {
            Self::token(token)
        } else if let Some(pair) = prefixed("basic=") {
            Self::basic(pair)
        } else if line.contains(':') {
            Self::basic(line)
        } else {
            Self::token(line)
        }
    }

    fn token(t: &str) -> Result<Credentials, AuthError> {
        let t = t.trim();
        if t.is_empty() {
            return Err(AuthError::BadToken("empty"));
        }
        // It goes into a header verbatim: visible ASCII only.
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::BadToken(
                "only visible ASCII characters, no spaces, may appear in a token",
            ));
        }
        Ok(Credentials::Token(t.to_owned()))
    }

    fn basic(pair: &str) -> Result<Credentials, AuthError> {
        // RFC 7617: the user-id cannot contain ':', the password can.
        let (user, password) = pair
            .split_once(':')
            .ok_or(AuthError::BadBasic("expected <user>:<password>"))?;
        if user.is_empty() {
            return Err(AuthError::BadBasic("empty user"));
        }
        if pair.chars().any(char::is_control) {
            return Err(AuthError::BadBasic("control characters"));
        }
        Ok(Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// Reads and parses a credentials file. Warns (path only) if group or
    /// others may read it.
    pub fn from_file(path: &Path) -> Result<Credentials, AuthError> {
        let origin = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            origin: origin(),
            source,
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    "credentials file is readable by group or others; chmod 600 it"
                );
            }
        }
        Self::parse(&text).map_err(|e| AuthError::In {
            origin: origin(),
            reason: Box::new(e),
        })
    }

    /// `req` with these credentials in its Authorization header (DC/OS's
    /// `token=`, or HTTP Basic), marked sensitive.
    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credentials::Token(t) => {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("token={t}"))
                    .expect("token syntax checked when parsed");
                v.set_sensitive(true);
                req.header(reqwest::header::AUTHORIZATION, v)
            }
            Credentials::Basic { user, password } => req.basic_auth(user, Some(password)),
        }
    }

    /// After a 401: re-reads `path` into `current`; true if it now holds
    /// other credentials (worth one retry). `who` names the source in logs.
    pub fn reload(path: &Path, current: &mut Option<Credentials>, who: &str) -> bool {
        match Credentials::from_file(path) {
            Ok(new) if current.as_ref() == Some(&new) => false,
            Ok(new) => {
                tracing::info!(path = %path.display(), scheme = new.scheme(), "{who}: credentials file changed, retrying");
                *current = Some(new);
                true
            }
            Err(e) => {
                tracing::warn!("{who}: 401, and re-reading the credentials failed: {e}");
                false
            }
        }
    }

    /// `token` or `basic`, for logs.
    pub fn scheme(&self) -> &'static str {
        match self {
            Credentials::Token(_) => "token",
            Credentials::Basic { .. } => "basic",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &format_args!("<redacted>"))
                .finish(),
        }
    }
}

/// Why credentials were refused. Messages describe the problem, never the value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials line (expected token=…, basic=user:password, user:password or a bare token)"
    )]
    Empty,
    #[error("more than one credentials line")]
    SeveralLines,
    #[error("bad token: {0}")]
    BadToken(&'static str),
    #[error("bad basic credentials: {0}")]
    BadBasic(&'static str),
    #[error("Marathon credentials {origin}: {source}")]
    Io {
        origin: String,
        source: std::io::Error,
    },
    #[error("Marathon credentials {origin}: {reason}")]
    In {
        origin: String,
        reason: Box<AuthError>,
    },
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        m: MarathonArgs,
    }

    fn parse(args: &[&str]) -> MarathonArgs {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .m
    }

    #[test]
    fn credentials_syntax() {
        assert_eq!(
            Credentials::parse("token=eyJhbGc.iOiJ.SUzI1\n").unwrap(),
            Credentials::Token("eyJhbGc.iOiJ.SUzI1".into())
        );
        assert_eq!(
            Credentials::parse("TOKEN=abc").unwrap(),
            Credentials::Token("abc".into())
        );
        assert_eq!(
            Credentials::parse("# DC/OS service account\n\n  eyJ0eXAi.x.y  \n").unwrap(),
            Credentials::Token("eyJ0eXAi.x.y".into())
        );
        assert_eq!(
            Credentials::parse("alice:s3:cr=t").unwrap(),
            Credentials::Basic {
                user: "alice".into(),
                password: "s3:cr=t".into()
            }
        );
        assert_eq!(
            Credentials::parse("basic=bob:").unwrap(),
            Credentials::Basic {
                user: "bob".into(),
                password: String::new()
            }
        );
        // An explicit prefix wins over the ':' rule.
        assert_eq!(
            Credentials::parse("token=a:b").unwrap(),
            Credentials::Token("a:b".into())
        );
    }

    #[test]
    fn credentials_errors_never_echo_the_secret() {
        for (text, secret) in [
            ("", ""),
            ("# only a comment\n", ""),
            ("token=", ""),
            ("token=has space", "has space"),
            ("basic=nocolon", "nocolon"),
            ("basic=:pw-secret", "pw-secret"),
            ("alice:pw1\nbob:pw2", "pw1"),
        ] {
            let err = Credentials::parse(text).unwrap_err().to_string();
            assert!(
                secret.is_empty() || !err.contains(secret),
                "{text:?} → {err}"
            );
        }
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let t = Credentials::Token("sekrit-token".into());
        let b = Credentials::Basic {
            user: "alice".into(),
            password: "sekrit-pw".into(),
        };
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let shown = format!("{b:?}");
        assert!(
            shown.contains("alice") && !shown.contains("sekrit"),
            "{shown}"
        );
        assert_eq!(format!("{:?}", SecretArg("sekrit".into())), "<redacted>");
    }

    #[test]
    fn credentials_from_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "# comment\nbasic=alice:pw").unwrap();
        let args = parse(&[
            "--marathon",
            "http://127.0.0.1:8080",
            "--marathon-auth-file",
            f.path().to_str().unwrap(),
        ]);
        let cfg = args.resolve(Keep::Records).unwrap().unwrap();
        assert_eq!(
            cfg.client.auth,
            Some(Credentials::Basic {
                user: "alice".into(),
                password: "pw".into()
            })
        );
        assert_eq!(cfg.client.auth_file.as_deref(), Some(f.path()));

        let missing = parse(&[
            "--marathon",
            "http://m",
            "--marathon-auth-file",
            "/nonexistent/auth",
        ]);
        let err = missing.resolve(Keep::Records).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/auth"), "{err}");
    }

    #[test]
    fn defaults_and_url_list() {
        let a = parse(&["--marathon", "http://m1:8080,https://m2/marathon"]);
        assert_eq!(a.marathon_timeout_ms, 5000);
        assert_eq!(a.marathon_resync_secs, 60);
        assert_eq!(a.marathon_idle_secs, 60);
        assert_eq!(a.marathon_debounce_ms, 20);
        assert_eq!(a.marathon_max_body_bytes, 128 << 20);
        assert_eq!(a.marathon_max_event_bytes, 8 << 20);
        let cfg = a.resolve(Keep::Records).unwrap().unwrap();
        let urls: Vec<_> = cfg.client.urls.iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://m1:8080/", "https://m2/marathon/"]);
        assert_eq!(cfg.client.request_timeout, Duration::from_secs(5));
        assert_eq!(cfg.resync, Duration::from_secs(60));
        assert_eq!(cfg.resync_jitter, 0.2);
        assert_eq!(cfg.debounce, Duration::from_millis(20));
        assert!(cfg.client.auth.is_none());

        assert!(parse(&[]).resolve(Keep::Records).unwrap().is_none());
        assert!(
            Cli::try_parse_from(["t", "--marathon", "http://m", "--marathon-timeout-ms", "0"])
                .is_err()
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_passwords() {
        for (raw, want) in [
            ("ftp://m", "scheme"),
            ("http://m/?x=1", "query"),
            ("not a url", "relative URL"),
        ] {
            let err = parse(&["--marathon", raw])
                .resolve(Keep::Records)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{raw}: {err}");
        }
        for raw in [
            "http://alice:pw-secret@m:8080/",
            "htp://alice:pw-secret@m x",
        ] {
            let a = parse(&["--marathon", raw]);
            let err = a.resolve(Keep::Records).unwrap_err().to_string();
            assert!(!err.contains("pw-secret"), "{err}");
            assert!(!format!("{a:?}").contains("pw-secret"));
        }
        assert_eq!(mask_userinfo("https://u:p@h:1/x@y"), "https://***@h:1/x@y");
    }

    #[test]
    fn auth_on_the_command_line_is_refused() {
        // The variable is not set by the test environment, so the value came from argv.
        if std::env::var_os(AUTH_ENV).is_some() {
            return;
        }
        let a = parse(&["--marathon", "http://m", "--marathon-auth", "token=abc"]);
        assert!(matches!(
            a.resolve(Keep::Records),
            Err(ArgsError::AuthOnCommandLine)
        ));
        // Even when a credentials file would win.
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "token=x").unwrap();
        let a = parse(&[
            "--marathon",
            "http://m",
            "--marathon-auth-file",
            f.path().to_str().unwrap(),
            "--marathon-auth",
            "token=abc",
        ]);
        assert!(matches!(
            a.resolve(Keep::Records),
            Err(ArgsError::AuthOnCommandLine)
        ));
    }

    #[test]
    fn clap_never_shows_the_env_value() {
        let cmd = Cli::command();
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == "marathon_auth")
            .unwrap();
        assert!(arg.is_hide_env_values_set());
        assert!(arg.is_hide_set());
        assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(AUTH_ENV)));
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("L4LB_MARATHON_AUTH"),
            "documented in --marathon-auth-file"
        );
    }
}
