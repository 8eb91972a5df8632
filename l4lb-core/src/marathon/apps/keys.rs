//! Field names matched as bytes. A derived struct asks for each key as an
//! identifier, which serde_json reads as a `&str`: a scan, then a UTF-8
//! check of every key (a tenth of a full read's instructions, see
//! BENCHMARKS.md). [`ByteKeys`] asks for the key's bytes instead, which
//! the derived code matches as bytes; each key is checked as serde_json
//! would have (UTF-8, no control character) by a branch-free scan that
//! needs no more for printable ASCII, so the same bodies read.
//!
//! serde_json reads a key's bytes with its string rules relaxed (control
//! characters and lone surrogates let through), and once a key held an
//! escape its bytes cannot tell an escaped control character from a raw
//! one: such a key is refused here with a data error, which sends the app
//! to the slow path (`decode::decode_app` parses it as a `Value`, which
//! refuses or reads it exactly as before). Marathon writes plain keys.
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A deserializer whose struct keys are read as bytes (see the module
/// docs). Only `deserialize_struct` is used by the derived code it wraps.
pub(super) struct ByteKeys<D>(pub(super) D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ByteKeys<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Fields(visitor))
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The struct's visitor, its map's keys read as bytes.
struct Fields<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Fields<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(KeyMap(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(seq)
    }
}

struct KeyMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for KeyMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Key(seed))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// The derived code's key seed, given a key deserializer that reads bytes.
struct Key<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Value, D::Error> {
        self.0.deserialize(KeyBytes(d))
    }
}

/// A key's deserializer: the identifier the derived code asks for is read
/// as bytes.
struct KeyBytes<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyBytes<D> {
    type Error = D::Error;

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(Name(visitor))
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum ignored_any
    }
}

/// Hands a key's bytes, checked, to the derived visitor.
struct Name<V>(V);

/// True if `key` is text serde_json's string rules take (see the module
/// docs): printable ASCII (checked without a branch per byte: most keys
/// are), else UTF-8 without a control character.
fn is_text(key: &[u8]) -> bool {
    // The high bit of `b` or of `b - 0x20` is set unless b is in 0x20..0x80.
    let odd = key
        .iter()
        .fold(0u8, |odd, &b| odd | b | b.wrapping_sub(0x20));
    odd & 0x80 == 0 || (std::str::from_utf8(key).is_ok() && !key.iter().any(|&b| b < 0x20))
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Name<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    /// The derived visitor matches the bytes against its field names.
    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<V::Value, E> {
        if !is_text(key) {
            return Err(E::custom(
                "a key that is not UTF-8 text, or holds a control character",
            ));
        }
        self.0.visit_bytes(key)
    }

    // A `Value`'s keys (the slow path) come as text.
    fn visit_str<E: de::Error>(self, s: &str) -> Result<V::Value, E> {
        self.0.visit_str(s)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<V::Value, E> {
        self.0.visit_borrowed_str(s)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<V::Value, E> {
        self.0.visit_string(s)
    }
}

#[cfg(test)]
mod tests {
    use crate::marathon::{apps::App, decode::decode_apps};

    fn app(text: &[u8]) -> Result<App, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// A body with `app` as its only app: read whole, it is refused exactly
    /// when a parse into a `Value` refuses it.
    fn reads_as_json_does(app: &[u8]) -> bool {
        let body = [&b"{\"apps\": ["[..], app, b"]}"].concat();
        let json = serde_json::from_slice::<serde_json::Value>(&body).is_ok();
        assert_eq!(
            decode_apps(&body).is_ok(),
            json,
            "{}",
            String::from_utf8_lossy(app)
        );
        json
    }

    #[test]
    fn known_keys_match_as_bytes_escaped_or_not() {
        let a = app(
            br#"{"i\u0064": "/a", "tasks": [{"\u0069d": "t", "state": "TASK_RUNNING",
            "ipAddresses": [{"ipAddress": "10.0.0.1"}], "healthCheckResults": [{"alive": true}]}],
            "portDefinitions": [{"port": 80}], "unknown\u00e9": 1}"#,
        )
        .unwrap();
        assert_eq!(a.id, "/a");
        let t = &a.tasks[0];
        assert_eq!(
            (t.id.as_str(), t.state),
            ("t", super::super::TaskState::Running)
        );
        assert_eq!(t.ip_addresses.len(), 1);
        assert_eq!(t.health_check_results[0].alive, Some(true));
        assert_eq!(a.port_definitions[0].port, Some(80));
    }

    #[test]
    fn derived_rules_stay() {
        let e = app(br#"{"id": "/a", "id": "/b"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `id`"), "{e}");
        let e = app(br#"{"tasks": []}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `id`"), "{e}");
        let e = app(br#"{"id": "/a", "container": "DOCKER"}"#).unwrap_err();
        assert!(e.to_string().contains("expected struct Container"), "{e}");
        // A struct from a list, as serde's derive reads one.
        let a = app(br#"{"id": "/a", "tasks": [{"id": "t", "healthCheckResults": [[false]]}]}"#);
        assert_eq!(
            a.unwrap().tasks[0].health_check_results[0].alive,
            Some(false)
        );
    }

    #[test]
    fn odd_keys_are_refused_or_read_as_a_whole_parse_does() {
        let accepted = [
            &br#"{"id": "/a", "x\ny": 1}"#[..],
            br#"{"id": "/a", "\u0000": 1}"#,
            b"{\"id\": \"/a\", \"caf\xc3\xa9\": 1}",
            br#"{"id": "/a", "\ud83d\ude00": 1}"#,
            br#"{"id": "/a", "tasks": [{"id": "t", "\t": 1}]}"#,
        ];
        for text in accepted {
            assert!(reads_as_json_does(text));
        }
        let refused = [
            &b"{\"id\": \"/a\", \"x\x01y\": 1}"[..],
            b"{\"id\": \"/a\", \"\\n\x1f\": 1}",
            b"{\"id\": \"/a\", \"\xff\": 1}",
            b"{\"id\": \"/a\", \"tasks\": [{\"id\": \"t\", \"\xc3\": 1}]}",
            br#"{"id": "/a", "\ud800": 1}"#,
            br#"{"id": "/a", "\udc00x": 1}"#,
        ];
        for text in refused {
            assert!(!reads_as_json_does(text));
        }
    }
}
