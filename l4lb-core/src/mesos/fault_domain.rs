//! An agent's zone from its fault domain (`agent_info.domain.fault_domain
//! .zone.name`, Mesos ≥ 1.5), for `--locality zone`: its tasks are in that
//! zone. The name is bounded as Marathon's task `zone` is
//! (`marathon::zone::task_zone`); a malformed domain is dropped with a reason.
use serde_json::Value;

/// The zone name in an agent's `domain` (None: no domain or no zone).
pub fn agent_zone(domain: Option<&Value>) -> Result<Option<String>, String> {
    let Some(domain) = domain.filter(|d| !d.is_null()) else {
        return Ok(None);
    };
    let zone = domain
        .get("fault_domain")
        .and_then(|f| f.get("zone"))
        .and_then(|z| z.get("name"));
    crate::marathon::zone::task_zone(zone).map_err(|e| format!("domain.fault_domain.{e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_zone_name_is_read_and_the_rest_tolerated() {
        let d = json!({"fault_domain": {"region": {"name": "aws/us-west-2"}, "zone": {"name": "aws/us-west-2a"}}});
        assert_eq!(agent_zone(Some(&d)), Ok(Some("aws/us-west-2a".into())));
        assert_eq!(agent_zone(None), Ok(None));
        assert_eq!(agent_zone(Some(&Value::Null)), Ok(None));
        assert_eq!(agent_zone(Some(&json!({}))), Ok(None));
        assert_eq!(
            agent_zone(Some(&json!({"fault_domain": {"region": {}}}))),
            Ok(None)
        );
        let bad = json!({"fault_domain": {"zone": {"name": 7}}});
        assert!(agent_zone(Some(&bad)).unwrap_err().contains("not a string"));
    }
}
