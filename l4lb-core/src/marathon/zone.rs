//! A task's zone (fault domain): Marathon's `tasks[].zone` (a string, set
//! when the Mesos agent has a fault domain), for `--locality zone`. Bounded;
//! a value of another type, too long or with control characters is dropped
//! with a warning (the task itself is kept, without a zone).
use serde_json::Value;

/// Longest zone name kept (Mesos fault-domain names are short labels).
pub const MAX_ZONE_LEN: usize = 255;

/// The zone in `v` (None: absent, null or empty); Err: why it was dropped.
pub fn task_zone(v: Option<&Value>) -> Result<Option<String>, String> {
    let s = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            let kind = match other {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::Array(_) => "an array",
                _ => "an object",
            };
            return Err(format!("zone: {kind}, not a string; ignored"));
        }
    };
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_ZONE_LEN {
        return Err(format!(
            "zone: {} bytes, more than {MAX_ZONE_LEN}; ignored",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("zone: control characters; ignored".into());
    }
    Ok(Some(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_are_kept_trimmed_and_absent_is_none() {
        let z = json!("aws/us-west-2a");
        assert_eq!(task_zone(Some(&z)), Ok(Some("aws/us-west-2a".into())));
        assert_eq!(task_zone(Some(&json!("  z1 "))), Ok(Some("z1".into())));
        assert_eq!(task_zone(None), Ok(None));
        assert_eq!(task_zone(Some(&Value::Null)), Ok(None));
        assert_eq!(task_zone(Some(&json!(""))), Ok(None));
    }

    #[test]
    fn malformed_values_are_dropped_with_a_reason() {
        for (v, why) in [
            (json!(3), "a number"),
            (json!({"name": "z"}), "an object"),
            (json!(["z"]), "an array"),
            (json!(true), "a boolean"),
            (json!("a".repeat(MAX_ZONE_LEN + 1)), "more than 255"),
            (json!("z\u{0}1"), "control characters"),
        ] {
            let e = task_zone(Some(&v)).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
        assert!(task_zone(Some(&json!("a".repeat(MAX_ZONE_LEN)))).is_ok());
    }
}
