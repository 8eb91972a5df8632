//! Knot DNS as the peer of `bench dns`: the same records, served from a zone
//! file the agent's own zone transfer wrote, by `knotd` inside the sandbox
//! netns (never the host's), on its own loopback port.
use std::{fs, path::Path, thread, time::Duration};

use anyhow::{Result, bail};
use l4lb_tests::Sandbox;

use crate::util;

/// Where knotd listens in the sandbox netns.
pub const KNOT_LISTEN: &str = "127.0.0.1:5354";

pub struct Knot {
    pid: u32,
}

impl Knot {
    /// `knotd` serving `zone` (zone-file text) for the origin `origin`,
    /// in `sb`'s netns; returns once it answers an A query for `probe`.
    pub fn start(sb: &mut Sandbox, origin: &str, zone: &str, probe: &str) -> Result<Knot> {
        if util::output(std::process::Command::new("knotd").arg("--version")).is_err() {
            bail!("knotd not installed: run `cargo xtask setup` (Debian package knot)");
        }
        let dir = sb.workdir().join("knot");
        fs::create_dir_all(dir.join("run"))?;
        fs::write(dir.join(format!("{origin}.zone")), zone)?;
        let conf = dir.join("knot.conf");
        fs::write(&conf, config(&dir, origin))?;
        let mut cmd = sb.in_netns("knotd");
        cmd.arg("-c").arg(&conf);
        cmd.stdout(fs::File::create(dir.join("knotd.log"))?);
        cmd.stderr(fs::File::create(dir.join("knotd.err"))?);
        let pid = sb.spawn(cmd)?;
        let knot = Knot { pid };
        for _ in 0..100 {
            if dig(sb, KNOT_LISTEN, probe, "A").is_ok_and(|a| !a.is_empty()) {
                return Ok(knot);
            }
            thread::sleep(Duration::from_millis(100));
        }
        let err = fs::read_to_string(dir.join("knotd.err")).unwrap_or_default();
        bail!("knotd did not answer {probe} within 10 s; its log:\n{err}")
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// knotd's configuration: one zone from a file, nothing written back, its
/// default UDP workers (one per CPU), warnings to stderr.
fn config(dir: &Path, origin: &str) -> String {
    let (ip, port) = KNOT_LISTEN.split_once(':').expect("ip:port");
    let d = dir.display();
    format!(
        "server:\n    listen: {ip}@{port}\n    rundir: \"{d}/run\"\n\
         database:\n    storage: \"{d}\"\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    \
         zonefile-load: whole\n    journal-content: none\n\
         zone:\n  - domain: {origin}\n    file: \"{origin}.zone\"\n\
         log:\n  - target: stderr\n    any: warning\n"
    )
}

/// The zone `origin` as served by the DNS server at `listen`, through its
/// zone transfer, as zone-file text (the closing SOA dropped: a transfer
/// repeats it).
pub fn zone_file(sb: &Sandbox, listen: &str, origin: &str) -> Result<String> {
    let text = dig_at(sb, listen, &["+noall", "+answer", origin, "AXFR"])?;
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let soas = lines.iter().filter(|l| is_soa(l)).count();
    if soas != 2 || !lines.last().is_some_and(|l| is_soa(l)) {
        bail!("zone transfer of {origin} from {listen} is not SOA … SOA:\n{text}");
    }
    lines.pop();
    Ok(lines.join("\n") + "\n")
}

fn is_soa(line: &str) -> bool {
    line.split_whitespace().nth(3) == Some("SOA")
}

/// `dig +short` at `listen`.
pub fn dig(sb: &Sandbox, listen: &str, name: &str, rtype: &str) -> Result<String> {
    Ok(dig_at(sb, listen, &["+short", name, rtype])?
        .trim()
        .to_string())
}

/// The tests' one `dig` (a try of at most 2 s) at an `ip:port`.
fn dig_at(sb: &Sandbox, listen: &str, args: &[&str]) -> Result<String> {
    let (ip, port) = listen.split_once(':').expect("ip:port");
    let (text, replied) = sb.dig_at(ip, port.parse()?, args);
    if !replied {
        bail!("dig {args:?} at {listen}: no reply\n{text}");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fourth_field_makes_an_soa() {
        assert!(is_soa(
            "mesos. 60 IN SOA ns1.mesos. root.ns1.mesos. 1 60 600 86400 60"
        ));
        assert!(!is_soa("soa.mesos. 60 IN A 127.0.0.1"));
    }

    #[test]
    fn the_config_names_the_zone_file_and_port() {
        let c = config(Path::new("/w/knot"), "mesos");
        assert!(c.contains("listen: 127.0.0.1@5354"));
        assert!(c.contains("domain: mesos\n    file: \"mesos.zone\""));
        assert!(c.contains("storage: \"/w/knot\""));
    }
}
