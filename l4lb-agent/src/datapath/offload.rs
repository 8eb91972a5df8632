//! Which interfaces need the tc ingress program instead of XDP: a veth with
//! tx checksum offload on. Its peer (a container's end) sends packets marked
//! CHECKSUM_PARTIAL, whose L4 checksum XDP's full-checksum update corrupts.
//!
//! Read with the SIOCETHTOOL ioctl (ETHTOOL_GDRVINFO, ETHTOOL_GTXCSUM): two
//! fixed-layout structs with libc, as `link_sys.rs` does for bpf(). The
//! maintained crate for ethtool (rust-netlink's `ethtool`) speaks generic
//! netlink on an async runtime and brings its own netlink crates for what is
//! one bit here.
//!
//! The agent sees only its own end of a veth; the peer lives in another
//! network namespace. Both ends are created with the same features, so the
//! local end stands for the pair: a pair whose container end alone has tx
//! offload on is not detected (`--xdp-mode tc` covers it).
use std::{ffi::c_void, io, os::fd::AsRawFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `ETHTOOL_*` commands (include/uapi/linux/ethtool.h).
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GTXCSUM: u32 = 0x16;
/// `struct ethtool_drvinfo`: cmd, then driver[32] (the rest is not read).
const DRVINFO_LEN: usize = 196;

/// `struct ifreq` with its `ifr_data` member (40 bytes on 64-bit).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut c_void,
    _pad: [u8; 16],
}

/// What the agent needs to know about an interface's offloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offload {
    /// The driver's name (`veth`, `ixgbe`, …).
    pub driver: String,
    /// Any tx checksum offload feature on.
    pub tx_csum: bool,
}

impl Offload {
    /// Packets arriving here may be CHECKSUM_PARTIAL: a veth (its peer
    /// hands over skbs as they were sent) with tx checksum offload on. A
    /// NIC's received packets never are, whatever its tx offload.
    pub fn partial_checksums(&self) -> bool {
        self.driver == "veth" && self.tx_csum
    }
}

/// The driver and tx checksum offload of `iface` (in this network namespace).
pub fn read(iface: &str) -> io::Result<Offload> {
    let mut drv = [0u8; DRVINFO_LEN];
    drv[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    match ethtool(iface, drv.as_mut_ptr().cast()) {
        Ok(()) => {}
        // Devices without a driver to name (loopback): no name.
        Err(e) if e.kind() == io::ErrorKind::Unsupported => drv = [0; DRVINFO_LEN],
        Err(e) => return Err(e),
    }
    let name = &drv[4..36];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let mut value = [ETHTOOL_GTXCSUM, 0u32];
    ethtool(iface, value.as_mut_ptr().cast())?;
    Ok(Offload {
        driver: String::from_utf8_lossy(&name[..end]).into_owned(),
        tx_csum: value[1] != 0,
    })
}

/// One SIOCETHTOOL call on `iface` with the command struct at `data`.
fn ethtool(iface: &str, data: *mut c_void) -> io::Result<()> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").or_else(|_| {
        // A netns without loopback up: any datagram socket carries the ioctl.
        std::net::UdpSocket::bind("[::1]:0")
    })?;
    // SAFETY: `req` is a valid ifreq whose data points to a command struct
    // large enough for that command; both outlive the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("ethtool on {iface}: {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_veth_with_tx_offload_passes_partial_checksums() {
        let o = |driver: &str, tx_csum| Offload {
            driver: driver.into(),
            tx_csum,
        };
        assert!(o("veth", true).partial_checksums());
        assert!(!o("veth", false).partial_checksums());
        assert!(!o("ixgbe", true).partial_checksums());
    }

    #[test]
    fn reads_loopback_and_names_a_missing_interface() {
        // Reading is unprivileged and changes nothing.
        let lo = read("lo").unwrap();
        assert_eq!(lo.driver, "");
        let e = read("l4lb-nosuch0").unwrap_err();
        assert!(e.to_string().contains("l4lb-nosuch0"), "{e}");
    }
}
