//! The socket hooks' links, pinned at `<pin-root>/links/<program>` so the
//! datapath keeps serving while no agent runs. A new agent replaces the
//! program inside each pinned link (BPF_LINK_UPDATE): the hook is never
//! detached and never doubled, and a SIGKILL at any instruction leaves every
//! hook attached, with the old or the new program.
//!
//! Only when a pinned link cannot be updated (none yet, another cgroup, a
//! cgroup that is gone) is a new link attached; it is pinned under a name no
//! previous link holds at that moment and renamed over the old pin (one
//! atomic step). Leftovers are unpinned only when proven to be a previous
//! generation's: their link id is not one this run attached or updated.
use std::{
    collections::BTreeSet,
    fs::{self, File},
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, ProgramFd, SockOps, links::FdLink,
    },
};
use tracing::{debug, info, warn};

use super::{
    SOCK_PROGRAMS,
    link_sys::{self, BPF_LINK_TYPE_CGROUP},
};

/// Where the program links are pinned, under the pin root.
pub const LINKS_DIR: &str = "links";

/// Attaches (or re-programs) the socket hooks on `cgroup` and pins their links.
pub(super) fn attach_sock_programs(
    ebpf: &mut Ebpf,
    cgroup_dir: &File,
    cgroup: &Path,
    links_dir: &Path,
) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(links_dir)
        .with_context(|| format!("creating {}", links_dir.display()))?;
    let cgroup_id = cgroup_dir
        .metadata()
        .with_context(|| format!("stat {}", cgroup.display()))?
        .ino();
    let mut ours = BTreeSet::new();
    let (mut updated, mut attached) = (0, 0);
    for name in SOCK_PROGRAMS {
        let prog = hook_mut(ebpf, name)?;
        prog.load_hook()
            .with_context(|| format!("loading {name} (verifier)"))?;
        let path = links_dir.join(name);
        if let Some(id) = update_in_place(prog, &path, cgroup_id)? {
            ours.insert(id);
            updated += 1;
            continue;
        }
        ours.insert(attach_and_pin(
            prog, name, cgroup_dir, cgroup, links_dir, &ours,
        )?);
        attached += 1;
    }
    let swept = sweep(links_dir, &ours)?;
    info!(updated, attached, swept, "socket hook links in place");
    Ok(())
}

/// Replaces the program inside the link pinned at `path` if it is a cgroup
/// link on `cgroup_id`; returns its link id, or None if it cannot be used.
fn update_in_place(prog: &dyn CgroupHook, path: &Path, cgroup_id: u64) -> Result<Option<u32>> {
    let Some((fd, info)) = open_link(path) else {
        return Ok(None);
    };
    if info.link_type != BPF_LINK_TYPE_CGROUP || info.cgroup_id != cgroup_id {
        info!(path = %path.display(), cgroup_id = info.cgroup_id, "pinned link is on another cgroup: attaching a new one");
        return Ok(None);
    }
    let prog_fd = prog.hook_fd().context("program fd")?;
    match link_sys::link_update(fd.as_fd(), prog_fd.as_fd()) {
        Ok(()) => Ok(Some(info.id)),
        Err(e) => {
            warn!(path = %path.display(), "cannot replace the program in the pinned link ({e}): attaching a new one");
            Ok(None)
        }
    }
}

/// Attaches a new link and pins it at `links_dir/name`, replacing (renaming
/// over) whatever link was pinned there. Returns the new link's id.
fn attach_and_pin(
    prog: &mut dyn CgroupHook,
    name: &str,
    cgroup_dir: &File,
    cgroup: &Path,
    links_dir: &Path,
    ours: &BTreeSet<u32>,
) -> Result<u32> {
    // bpf_link attachments are always multi-program (the kernel rejects
    // flags on link_create), so other cgroup programs keep running.
    let link = prog
        .attach_link(cgroup_dir)
        .with_context(|| format!("attaching {name} to {}", cgroup.display()))?;
    let id = link
        .info()
        .with_context(|| format!("{name}: link info"))?
        .id();
    // bpffs refuses names with a dot. A pin at the temporary name is a crashed
    // run's link (this run pins each name once): it may go, ours is attached.
    let tmp = links_dir.join(format!("{name}_new"));
    unpin_unless_ours(&tmp, ours)?;
    link.pin(&tmp)
        .with_context(|| format!("pinning the {name} link at {}", tmp.display()))?;
    let path = links_dir.join(name);
    fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
    Ok(id)
}

/// The three kinds of program attached to the cgroup: the sock_addr hooks,
/// the sock_ops observer and the sock_release one. All attach as cgroup
/// bpf_links, updated in place alike.
trait CgroupHook {
    fn load_hook(&mut self) -> Result<(), aya::programs::ProgramError>;
    fn hook_fd(&self) -> Result<&ProgramFd, aya::programs::ProgramError>;
    fn attach_link(&mut self, cgroup: &File) -> Result<FdLink>;
}

/// The same three calls on each program type (aya gives them no shared trait).
macro_rules! cgroup_hook {
    ($program:ty) => {
        impl CgroupHook for $program {
            fn load_hook(&mut self) -> Result<(), aya::programs::ProgramError> {
                self.load()
            }
            fn hook_fd(&self) -> Result<&ProgramFd, aya::programs::ProgramError> {
                self.fd()
            }
            fn attach_link(&mut self, cgroup: &File) -> Result<FdLink> {
                let id = self.attach(cgroup, CgroupAttachMode::Single)?;
                Ok(self.take_link(id)?.try_into()?)
            }
        }
    };
}

cgroup_hook!(CgroupSockAddr);
cgroup_hook!(SockOps);
cgroup_hook!(CgroupSock);

fn hook_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut dyn CgroupHook> {
    match ebpf.program_mut(name) {
        Some(Program::CgroupSockAddr(p)) => Ok(p),
        Some(Program::SockOps(p)) => Ok(p),
        Some(Program::CgroupSock(p)) => Ok(p),
        Some(_) => anyhow::bail!("program {name} is not a cgroup socket program"),
        None => anyhow::bail!("program {name} missing from the BPF object"),
    }
}

/// Unpins every link under `links_dir` that is not one of `ours`: links of
/// earlier runs left under temporary names. Returns how many went.
fn sweep(links_dir: &Path, ours: &BTreeSet<u32>) -> Result<usize> {
    let mut gone = 0;
    for path in pinned_links(links_dir)? {
        if unpin_unless_ours(&path, ours)? {
            gone += 1;
        }
    }
    Ok(gone)
}

/// Removes the pin at `path` if it holds a link whose id is not in `ours`
/// (with no pin and no fd left, the kernel detaches it). True if removed.
fn unpin_unless_ours(path: &Path, ours: &BTreeSet<u32>) -> Result<bool> {
    let Some((_fd, info)) = open_link(path) else {
        return Ok(false);
    };
    if ours.contains(&info.id) {
        return Ok(false);
    }
    debug!(path = %path.display(), link = info.id, "unpinning an earlier run's link");
    fs::remove_file(path).with_context(|| format!("unpinning {}", path.display()))?;
    Ok(true)
}

/// The link pinned at `path` and what the kernel says about it; None if
/// nothing is pinned there or it is not a link.
fn open_link(path: &Path) -> Option<(OwnedFd, link_sys::LinkInfo)> {
    let fd = link_sys::obj_get(path).ok()?;
    let info = link_sys::link_info(fd.as_fd()).ok()?;
    Some((fd, info))
}

pub(super) fn pinned_links(links_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in
        fs::read_dir(links_dir).with_context(|| format!("reading {}", links_dir.display()))?
    {
        out.push(entry?.path());
    }
    out.sort();
    Ok(out)
}

/// One pinned hook as `verify` reports it.
#[derive(Debug, serde::Serialize)]
pub struct HookState {
    pub program: &'static str,
    /// The link's cgroup id (0: its cgroup is gone); None: no link pinned.
    pub cgroup_id: Option<u64>,
}

/// The pinned link of every socket hook (for `l4lb-agent verify`).
pub fn hook_states(links_dir: &Path) -> Vec<HookState> {
    SOCK_PROGRAMS
        .iter()
        .map(|program| {
            let info = open_link(&links_dir.join(program)).map(|(_, i)| i);
            HookState {
                program,
                cgroup_id: info
                    .filter(|i| i.link_type == BPF_LINK_TYPE_CGROUP)
                    .map(|i| i.cgroup_id),
            }
        })
        .collect()
}
