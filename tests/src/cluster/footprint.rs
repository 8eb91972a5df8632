//! What a cluster leaves on the machine while it runs (namespaces, cgroups,
//! pin roots, work dirs, processes), so a test can check that nothing of it
//! is left after drop.
use std::{fs, path::PathBuf};

/// Everything a cluster made, by name and path; processes by pid and
/// start time (a recycled pid is another process).
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    pub netns: Vec<String>,
    pub cgroups: Vec<PathBuf>,
    pub pin_roots: Vec<PathBuf>,
    pub workdirs: Vec<PathBuf>,
    pub procs: Vec<(u32, u64)>,
}

impl Footprint {
    /// Records a process that is alive now (gone already: nothing to check).
    pub fn add_proc(&mut self, pid: u32) {
        if let Some(start) = start_time(pid) {
            self.procs.push((pid, start));
        }
    }

    /// What of it still exists, one line each (empty: all gone).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = vec![];
        for ns in &self.netns {
            if PathBuf::from("/run/netns").join(ns).exists() {
                left.push(format!("netns {ns}"));
            }
        }
        let paths = [
            ("cgroup", &self.cgroups),
            ("pin root", &self.pin_roots),
            ("work dir", &self.workdirs),
        ];
        for (what, list) in paths {
            for p in list.iter().filter(|p| p.exists()) {
                left.push(format!("{what} {}", p.display()));
            }
        }
        for &(pid, start) in &self.procs {
            if start_time(pid) == Some(start) {
                left.push(format!("process {pid}"));
            }
        }
        left
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_seen_and_a_missing_one_is_not() {
        let mut f = Footprint::default();
        f.add_proc(std::process::id());
        assert_eq!(
            f.leftovers(),
            vec![format!("process {}", std::process::id())]
        );
        f.procs = vec![(std::process::id(), 0)];
        assert!(
            f.leftovers().is_empty(),
            "another start time is another process"
        );
        f.netns.push("l4lb-no-such-netns".into());
        f.cgroups.push("/nonexistent/cgroup".into());
        assert!(f.leftovers().is_empty());
    }
}
