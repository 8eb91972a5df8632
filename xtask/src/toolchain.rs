//! The one place that names the machine toolchain. `l4lb-agent/build.rs`
//! hard-codes the same paths, so change both together.

/// Debian packages `setup` installs: Debian's Rust 1.96 with a prebuilt `core`
/// for bpfel (rustup's toolchains here have no `rust-src`, so no
/// `-Z build-std=core` for bpfel), LLVM 22 for bpf-linker, and the runtime tools
/// the tests, demo and bench call.
pub const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "rust-web-llvm",
    "llvm-22-dev",
    "bpftool",
    "iproute2",
    "redis-server",
    "redis-tools",
    "dnsutils",
    "procps",
    "curl",
    // XDP topology tests (checksum offload off on the veths, an HTTP backend)
    // and `bench xdp` (iptables / nftables DNAT baselines in the node netns).
    "ethtool",
    "python3",
    "iptables",
    "nftables",
    "dnsperf",
    // `bench peers` (marathon-lb's engine), `bench profile` (callgrind), plot text.
    "haproxy",
    // `bench dns`: Knot DNS, the peer, started only inside the sandbox netns
    // (the package's own service is not used).
    "knot",
    "valgrind",
    "fonts-dejavu-core",
];

/// Debian's cargo and rustc (shadowed on PATH by rustup's; always called by path).
pub const DEBIAN_CARGO: &str = "/usr/bin/cargo";
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// `cargo install --root` for bpf-linker, outside any rustup or cargo home so
/// build.rs finds it at a fixed path.
pub const TOOLS_ROOT: &str = "/opt/l4lb-tools";
pub const BPF_LINKER: &str = "/opt/l4lb-tools/bin/bpf-linker";
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// `cargo deny` (dependency advisories, licenses, bans, sources), pinned so
/// every machine checks with the same rules; run by `cargo xtask test`.
pub const CARGO_DENY: &str = "/opt/l4lb-tools/bin/cargo-deny";
pub const CARGO_DENY_VERSION: &str = "0.20.2";
/// Without LLVM_PREFIX the bpf-linker build finds LLVM 14 and fails to link.
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
pub const BPF_LINKER_FEATURE: &str = "llvm-22";

/// Where bpffs must be mounted for the agent's pins.
pub const BPFFS: &str = "/sys/fs/bpf";
