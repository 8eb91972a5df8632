//! One list entry that may not decode: a bad task, agent or framework is
//! kept as [`Lenient::Bad`] (with whatever id it carries, for the warning)
//! instead of failing the whole message.

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Lenient<T> {
    Ok(T),
    Bad {
        /// The entry's id, if one could be found (`task_id.value`, `id`, …).
        id: Option<String>,
        error: String,
    },
}

impl<T> Lenient<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            Lenient::Ok(t) => Some(t),
            Lenient::Bad { .. } => None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match T::deserialize(&v) {
            Ok(t) => Lenient::Ok(t),
            Err(e) => Lenient::Bad {
                id: entry_id(&v),
                error: e.to_string(),
            },
        })
    }
}

/// The id a bad entry carries, wherever its kind keeps it.
fn entry_id(v: &Value) -> Option<String> {
    const PATHS: [&[&str]; 7] = [
        &["task_id", "value"],
        &["status", "task_id", "value"],
        &["agent_info", "id", "value"],
        &["framework_info", "id", "value"],
        &["id", "value"],
        &["id"],
        &["name"],
    ];
    PATHS.iter().find_map(|path| {
        let mut at = v;
        for key in *path {
            at = at.get(key)?;
        }
        at.as_str().map(|s| s.chars().take(200).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct T {
        n: u16,
    }

    #[test]
    fn a_bad_entry_is_kept_with_its_id() {
        let v: Vec<Lenient<T>> =
            serde_json::from_str(r#"[{"n":1},{"n":"x","task_id":{"value":"web.1"}},7]"#).unwrap();
        assert_eq!(v[0], Lenient::Ok(T { n: 1 }));
        assert!(matches!(&v[1], Lenient::Bad { id: Some(id), .. } if id == "web.1"));
        assert!(matches!(&v[2], Lenient::Bad { id: None, .. }));
    }
}
