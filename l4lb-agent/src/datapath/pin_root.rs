//! The pin root directory: created 0700, refused when someone else could have
//! planted or could change what is in it, and locked (flock on the directory,
//! which bpffs supports like any filesystem) for as long as an agent uses it,
//! so two agents never write one set of maps.
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
};

use anyhow::{Context, Result, bail};

/// An open, checked and exclusively locked pin root. The lock goes with the
/// process (close or exit, SIGKILL included): nothing to clean up after a crash.
#[derive(Debug)]
pub struct PinRootLock {
    _dir: File,
}

/// Locks this process holds, by pin root: `run` takes the lock before it does
/// anything and `load` takes it again, sharing it rather than conflicting.
static HELD: Mutex<BTreeMap<PathBuf, Weak<PinRootLock>>> = Mutex::new(BTreeMap::new());

/// Creates `pin_root` if needed (0700), checks who owns it and locks it
/// (shared with this process's live lock on it, if any); held until the last
/// clone is dropped.
pub fn create_and_lock(pin_root: &Path) -> Result<Arc<PinRootLock>> {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(lock) = held.get(pin_root).and_then(Weak::upgrade) {
        return Ok(lock);
    }
    let lock = Arc::new(create_and_lock_new(pin_root)?);
    held.insert(pin_root.to_path_buf(), Arc::downgrade(&lock));
    Ok(lock)
}

fn create_and_lock_new(pin_root: &Path) -> Result<PinRootLock> {
    check_bpffs(pin_root)?;
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(pin_root)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating pin root {}", pin_root.display()));
        }
    }
    lock(pin_root, true)
}

/// Locks an existing pin root (for `teardown`, which may also clean up a
/// root someone else planted: no owner check); None if there is none.
pub fn lock_existing(pin_root: &Path) -> Result<Option<PinRootLock>> {
    match fs::symlink_metadata(pin_root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        _ => lock(pin_root, false).map(Some),
    }
}

fn lock(pin_root: &Path, owner_check: bool) -> Result<PinRootLock> {
    // O_NOFOLLOW: a symlink planted at the pin root is refused, and the checks
    // below are on the directory actually opened, not on a path that may change.
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(pin_root)
        .with_context(|| {
            format!(
                "opening pin root {} (a directory, not a symlink)",
                pin_root.display()
            )
        })?;
    let meta = dir
        .metadata()
        .with_context(|| format!("stat {}", pin_root.display()))?;
    if owner_check {
        // SAFETY: plain FFI, no arguments.
        let euid = unsafe { libc::geteuid() };
        check_owner(pin_root, meta.uid(), meta.mode(), euid)?;
    }
    // SAFETY: flock on an fd we own.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = lock_holder(meta.dev(), meta.ino())
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            bail!(
                "another l4lb-agent{holder} is using the pin root {}: one agent per pin root \
                 (stop that one, or give this one another --pin-root)",
                pin_root.display()
            );
        }
        return Err(err).with_context(|| format!("locking pin root {}", pin_root.display()));
    }
    Ok(PinRootLock { _dir: dir })
}

/// The pin root must be ours and writable by nobody else: bpffs is often
/// mounted world-writable (mode 1777), so any user could pre-create it and
/// then plant pins (maps, links) the agent would adopt.
fn check_owner(pin_root: &Path, uid: u32, mode: u32, euid: u32) -> Result<()> {
    if uid != euid {
        bail!(
            "pin root {} is owned by uid {uid}, not by this agent (uid {euid}): someone else created it; \
             inspect and remove it, then start again",
            pin_root.display()
        );
    }
    if mode & 0o022 != 0 {
        bail!(
            "pin root {} is writable by group or others (mode {:o}): anyone could plant pins there; \
             remove it (`l4lb-agent teardown`) or chmod 0700 it, then start again",
            pin_root.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// The pid holding a flock on (dev, ino), from /proc/locks
/// (`1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<ino> 0 EOF`, major and minor in hex).
fn lock_holder(dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())?
    })
}

fn check_bpffs(pin_root: &Path) -> Result<()> {
    let bpffs = pin_root.ancestors().any(|p| p == Path::new("/sys/fs/bpf"));
    if bpffs && !is_bpffs("/sys/fs/bpf") {
        bail!(
            "/sys/fs/bpf is not a bpffs mount: run `mount -t bpf -o mode=0700 bpf /sys/fs/bpf` (or `cargo xtask setup`)"
        );
    }
    Ok(())
}

fn is_bpffs(path: &str) -> bool {
    fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                l.split_whitespace().nth(1) == Some(path)
                    && l.split_whitespace().nth(2) == Some("bpf")
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("l4lb-pinroot-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn created_0700_and_locked_once() {
        let p = tmp("lock");
        let first = create_and_lock(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        let shared = create_and_lock(&p).expect("this process's own lock is shared");
        assert!(Arc::ptr_eq(&first, &shared));
        drop(shared);
        // Another holder (another agent): a second open file description.
        let err = create_and_lock_new(&p).unwrap_err().to_string();
        assert!(
            err.contains("another l4lb-agent")
                && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        create_and_lock_new(&p).expect("free again once the holder is gone");
        fs::remove_dir(&p).unwrap();
    }

    #[test]
    fn group_or_world_writable_or_foreign_or_symlinked_roots_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let p = tmp("mode");
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = create_and_lock(&p).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        lock_existing(&p).expect("teardown may clean up a planted root");
        fs::remove_dir(&p).unwrap();

        let link = tmp("symlink");
        std::os::unix::fs::symlink(std::env::temp_dir(), &link).unwrap();
        assert!(
            create_and_lock(&link).is_err(),
            "a symlink is not a pin root"
        );
        fs::remove_file(&link).unwrap();

        let err = check_owner(Path::new("/x"), 65534, 0o700, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        check_owner(Path::new("/x"), 0, 0o755, 0).expect("read-only for others is fine");
    }
}
