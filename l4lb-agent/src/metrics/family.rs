//! One metric family from a list of (labels, value) series: what every
//! scrape-time collector writes, written once.
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// A series' labels, in the order they are printed.
pub(crate) type Labels = Vec<(String, String)>;

/// Labels from name/value pairs.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A counter family (`<name>_total`). A single series without labels is
/// printed without braces.
pub(crate) fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let kind = ConstCounter::new(0u64).metric_type();
    let mut series = series.into_iter().peekable();
    let mut desc = encoder.encode_descriptor(name, help, None, kind)?;
    while let Some((labels, value)) = series.next() {
        if labels.is_empty() && series.peek().is_none() {
            return ConstCounter::new(value).encode(desc);
        }
        ConstCounter::new(value).encode(desc.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge family. A single series without labels is printed without
/// braces.
pub(crate) fn gauges<N: EncodeGaugeValue + Default>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, N)>,
) -> Result<(), std::fmt::Error> {
    let kind = ConstGauge::new(N::default()).metric_type();
    let mut series = series.into_iter().peekable();
    let mut desc = encoder.encode_descriptor(name, help, None, kind)?;
    while let Some((labels, value)) = series.next() {
        if labels.is_empty() && series.peek().is_none() {
            return ConstGauge::new(value).encode(desc);
        }
        ConstGauge::new(value).encode(desc.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One series per (value, count), labelled `key="value"`.
pub(crate) fn by_label<'a>(
    key: &'a str,
    series: impl IntoIterator<Item = (&'a str, u64)> + 'a,
) -> impl Iterator<Item = (Labels, u64)> + 'a {
    series
        .into_iter()
        .map(move |(value, n)| (labels(&[(key, value)]), n))
}

#[cfg(test)]
mod tests {
    use prometheus_client::{collector::Collector, registry::Registry};

    use super::*;

    #[derive(Debug)]
    struct Two;

    impl Collector for Two {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            counters(
                &mut e,
                "plain",
                "one series, no labels",
                [(Labels::new(), 3)],
            )?;
            counters(
                &mut e,
                "by_kind",
                "two series",
                by_label("kind", [("a", 1), ("b", 2)]),
            )?;
            gauges(&mut e, "level", "a gauge", [(labels(&[("x", "y")]), -4i64)])?;
            gauges(
                &mut e,
                "flat",
                "one gauge, no labels",
                [(Labels::new(), 5i64)],
            )
        }
    }

    #[test]
    fn families_print_as_prometheus_text() {
        let mut registry = Registry::with_prefix("l4lb");
        registry.register_collector(Box::new(Two));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let series: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                "l4lb_plain_total 3",
                "l4lb_by_kind_total{kind=\"a\"} 1",
                "l4lb_by_kind_total{kind=\"b\"} 2",
                "l4lb_level{x=\"y\"} -4",
                "l4lb_flat 5",
            ]
        );
    }
}
