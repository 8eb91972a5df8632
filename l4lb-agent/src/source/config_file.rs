//! Reading the static VIP file (the format itself is `l4lb_core::config`):
//! bounded, regular files only, never blocking on a FIFO.
use std::path::Path;

use crate::config::{self, ConfigError, StaticConfig};

/// A VIP file larger than this is refused: 65,536 VIPs with a few backends
/// each fit in a few MB, and a path pointing at an endless file (a device,
/// a FIFO) must not take the agent's memory.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Reads and parses a VIP file; errors start with the path.
pub fn load_config(path: &Path) -> Result<StaticConfig, ConfigError> {
    config::parse_file_text(path, &read_config_text(path)?)
}

/// A VIP file's text: a regular file (symlinks followed) of at most
/// [`MAX_CONFIG_BYTES`], in UTF-8.
pub fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: opening a FIFO for reading would wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    let mut text = String::new();
    let read = file
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if read as u64 > MAX_CONFIG_BYTES {
        return Err(io(std::io::Error::other(format!(
            "larger than {MAX_CONFIG_BYTES} bytes"
        ))));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../l4lb-core/tests/fixtures/config/example.yaml");

    #[track_caller]
    fn assert_has(msg: &str, needles: &[&str]) {
        for n in needles {
            assert!(msg.contains(n), "{msg:?} lacks {n:?}");
        }
    }

    #[test]
    fn load_config_reads_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("vips.yaml");
        std::fs::write(&good, EXAMPLE).unwrap();
        assert_eq!(
            load_config(&good).unwrap(),
            config::parse_config(EXAMPLE).unwrap()
        );

        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            include_str!("../../../l4lb-core/tests/fixtures/config/bad-weight.yaml"),
        )
        .unwrap();
        let msg = load_config(&bad).unwrap_err().to_string();
        assert_has(
            &msg,
            &[
                &bad.display().to_string(),
                "vips[1] (vip 11.0.0.1:6379): backends[2]: weight 101 out of range 0..=100",
            ],
        );

        let missing = dir.path().join("missing.yaml");
        let msg = load_config(&missing).unwrap_err().to_string();
        assert_has(&msg, &["cannot read", &missing.display().to_string()]);
    }
}
