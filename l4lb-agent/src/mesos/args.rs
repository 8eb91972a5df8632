//! `l4lb-agent run` flags for the Mesos source. URLs, credentials and CA
//! files follow the Marathon flags' rules (`crate::marathon::args`): no
//! credentials in argv, only the configured origins see them.
use std::{path::PathBuf, time::Duration};

use url::Url;

use crate::marathon::args::{ArgsError, Credentials, UrlArg};

/// Default cap on one RecordIO record (a SUBSCRIBED snapshot of a large
/// cluster is one record).
pub const DEFAULT_MAX_RECORD: usize = 64 << 20;

/// Mesos source flags, flattened into `l4lb-agent run`. Without `--mesos`
/// the source is off.
#[derive(clap::Args, Clone, Debug)]
pub struct MesosArgs {
    /// Mesos master URL(s), comma-separated or repeated (`http://m1:5050,http://m2:5050`).
    /// The operator API stream (`POST /api/v1` SUBSCRIBE) is followed; a non-leading
    /// master's 307 is followed to another configured origin only. Credentials in the
    /// URL are refused: use --mesos-auth-file.
    #[arg(long = "mesos", value_name = "URL", value_delimiter = ',', value_parser = UrlArg::parse)]
    pub mesos: Vec<UrlArg>,

    /// File holding the Mesos credentials, same syntax as --marathon-auth-file
    /// (`token=<ACS token>`, `basic=<user>:<password>`).
    #[arg(long, value_name = "PATH")]
    pub mesos_auth_file: Option<PathBuf>,

    /// Extra PEM root certificate(s) trusted for https Mesos URLs.
    #[arg(long, value_name = "PATH")]
    pub mesos_ca_file: Option<PathBuf>,

    /// Per-request limit: connect plus response headers (plus the whole body for
    /// `/master/state`).
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub mesos_timeout_ms: u64,

    /// Instead of the operator API stream, read `GET /master/state` every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub mesos_poll_secs: Option<u64>,

    /// At most one catalog per window: a change after a quiet window goes out at once,
    /// changes within the window after a catalog are gathered into the next one.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub mesos_debounce_ms: u64,

    /// Largest RecordIO record on the stream, and largest `/master/state` body: past
    /// it the read fails, the table stays, and the stream is reconnected.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_RECORD,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(4u64 << 30)))]
    pub mesos_max_record_bytes: usize,
}

/// Everything the Mesos source needs.
#[derive(Clone, Debug)]
pub struct MesosConfig {
    /// Base URLs, each ending in `/`, tried in this order.
    pub urls: Vec<Url>,
    pub auth: Option<Credentials>,
    pub auth_file: Option<PathBuf>,
    pub ca_pem: Option<Vec<u8>>,
    pub request_timeout: Duration,
    /// Some: poll `/master/state` at this period instead of streaming.
    pub poll: Option<Duration>,
    pub debounce: Duration,
    pub max_record: usize,
}

impl MesosConfig {
    /// Defaults for `urls` (tests).
    pub fn new(urls: Vec<Url>) -> MesosConfig {
        MesosConfig {
            urls,
            auth: None,
            auth_file: None,
            ca_pem: None,
            request_timeout: Duration::from_secs(5),
            poll: None,
            debounce: Duration::from_millis(20),
            max_record: DEFAULT_MAX_RECORD,
        }
    }
}

impl MesosArgs {
    pub fn enabled(&self) -> bool {
        !self.mesos.is_empty()
    }

    /// Validates the flags, loads the credentials and the CA file. `Ok(None)`
    /// when the source is off. Errors never contain a secret.
    pub fn resolve(&self) -> Result<Option<MesosConfig>, ArgsError> {
        if !self.enabled() {
            return Ok(None);
        }
        let urls = self
            .mesos
            .iter()
            .map(UrlArg::base_url)
            .collect::<Result<Vec<_>, _>>()?;
        let auth = match &self.mesos_auth_file {
            Some(path) => Some(Credentials::from_file(path)?),
            None => None,
        };
        let ca_pem = match &self.mesos_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| ArgsError::CaFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(Some(MesosConfig {
            urls,
            auth,
            auth_file: self.mesos_auth_file.clone(),
            ca_pem,
            request_timeout: Duration::from_millis(self.mesos_timeout_ms),
            poll: self.mesos_poll_secs.map(Duration::from_secs),
            debounce: Duration::from_millis(self.mesos_debounce_ms),
            max_record: self.mesos_max_record_bytes,
        }))
    }
}
