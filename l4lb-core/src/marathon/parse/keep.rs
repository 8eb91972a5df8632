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
    /// The services, and each part's records packed in one allocation
    /// (`Catalog::packed`, [`PackedRecords`](crate::model::PackedRecords)):
    /// for a reader that needs them only now and then (the discovery API
    /// without DNS), at ~a fifth of their size. Unpacked, they are the
    /// records [`Keep::Records`] keeps, in the same order.
    Packed,
    /// The services only: no record is made, `Catalog::tasks` is empty.
    /// Services, backends, weights, warnings and the agent names to look
    /// up are the same as with [`Keep::Records`].
    ServicesOnly,
}

impl Keep {
    /// True if tasks get records (kept whole or packed).
    pub fn records(self) -> bool {
        self != Keep::ServicesOnly
    }
}
