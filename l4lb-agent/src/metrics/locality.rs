//! `--locality` in `/metrics`: per VIP, connects kept local and spilled (by
//! reason), local probes; per backend, its class for this node.
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use crate::table::VipRow;

pub(super) fn encode(
    encoder: &mut DescriptorEncoder,
    rows: &[VipRow],
) -> Result<(), std::fmt::Error> {
    let local: Vec<_> = rows
        .iter()
        .filter_map(|r| Some((r, r.locality.as_ref()?)))
        .collect();
    if local.is_empty() {
        return Ok(()); // --locality off
    }
    let vip = |r: &VipRow| {
        vec![
            ("vip".to_string(), r.vip.to_string()),
            ("proto".to_string(), r.proto.to_string()),
        ]
    };
    let c = ConstCounter::new(0u64);
    let mut desc = encoder.encode_descriptor(
        "vip_local_picks",
        "TCP connects --locality sent to a backend local to this node (node or zone)",
        None,
        c.metric_type(),
    )?;
    for (r, l) in &local {
        ConstCounter::new(l.local_picks).encode(desc.encode_family(&vip(r))?)?;
    }
    let mut desc = encoder.encode_descriptor(
        "vip_local_spills",
        "TCP connects sent past the local backends: reason=load (the best one past 4x a random backend's cost) or down (all down or suspect)",
        None,
        c.metric_type(),
    )?;
    for (r, l) in &local {
        for (reason, v) in [("load", l.spills_load), ("down", l.spills_down)] {
            let mut labels = vip(r);
            labels.push(("reason".to_string(), reason.to_string()));
            ConstCounter::new(v).encode(desc.encode_family(&labels)?)?;
        }
    }
    let mut desc = encoder.encode_descriptor(
        "vip_local_probes",
        "TCP connects sent as the half-open probe of a local backend down for this node",
        None,
        c.metric_type(),
    )?;
    for (r, l) in &local {
        ConstCounter::new(l.local_probes).encode(desc.encode_family(&vip(r))?)?;
    }
    let g = ConstGauge::new(0i64);
    let mut desc = encoder.encode_descriptor(
        "backend_locality",
        "1 for the backend's locality for this node, per VIP: node, zone or remote",
        None,
        g.metric_type(),
    )?;
    for (r, _) in &local {
        for b in &r.backends {
            let Some(class) = b.locality else { continue };
            let mut labels = vip(r);
            labels.push(("backend".to_string(), b.addr.to_string()));
            labels.push(("locality".to_string(), class.to_string()));
            ConstGauge::new(1).encode(desc.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
