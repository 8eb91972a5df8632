//! [`Keep`]: what a decode keeps of each task.

/// What a decode keeps of each task. A task always gives the VIPs its
/// backends (address, weight from its state and health); its record (task
/// id, addresses, ports, zone) is read only by the DNS zones, the discovery
/// HTTP API and locality, so an agent running none of them keeps none: at
/// 10,000 apps x 5 tasks the records and their order were ~13 MB of the
/// source's heap. Chosen once per [`AppSet`](crate::marathon::decode::AppSet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// The services and every task's record (`Catalog::tasks`).
    #[default]
    Records,
    /// The services only: no record is made, `Catalog::tasks` is empty.
    /// Services, backends, weights, warnings and the agent names to look
    /// up are the same as with [`Keep::Records`].
    ServicesOnly,
}

impl Keep {
    pub fn records(self) -> bool {
        self == Keep::Records
    }
}
