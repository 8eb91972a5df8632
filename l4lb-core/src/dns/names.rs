//! Mesos-DNS and dcos-net task naming (pure).
//!
//! Marathon app `/group/app` runs Mesos tasks named `app.group`. From it:
//! - Mesos-DNS (`mesos` zone) makes the WHOLE task name one label
//!   ([`mesos_task_label`]: `app-group.marathon.mesos`, records/generator.go
//!   taskRecord with labels.RFC1123), and also serves a legacy set from the raw
//!   DiscoveryInfo name, which Marathon sets to the same `app.group`
//!   ([`mesos_task_name`]: `app.group.marathon.mesos`, two labels).
//! - dcos-net (`dcos.thisdcos.directory`) mangles the whole task name into ONE
//!   label with [`crate::naming::normalize_label`] (mesos_state's `label`):
//!   `app.group` → `app-group`, the same as Mesos-DNS but for its quirks on
//!   names longer than 63 characters.
use sha1::{Digest, Sha1};

/// Longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;

/// Length of the task-id hash in canonical names (Mesos-DNS uses 5).
const HASH_LEN: usize = 5;

/// The Mesos task name Marathon gives an app's tasks: the app id's path
/// segments reversed and joined with dots (`/group/app` → `app.group`).
/// Unsanitized: that is the input both DNS schemes start from.
pub fn marathon_task_name(app_id: &str) -> String {
    let segments: Vec<&str> = app_id.split('/').filter(|s| !s.is_empty()).collect();
    segments.into_iter().rev().collect::<Vec<_>>().join(".")
}

/// One RFC 1123 label the way Mesos-DNS makes it: lower-case; `-`, `.` and
/// `_` become `-`; every other character is dropped; leading `-` trimmed; cut
/// to 63 characters with trailing `-` trimmed, and — Mesos-DNS's quirk, kept
/// so names match a Mesos-DNS cluster's — the room that trimming freed is
/// refilled from the rest of the input. Empty if nothing is left.
pub fn rfc1123_label(s: &str) -> String {
    let mapped: String = s
        .chars()
        .filter_map(|c| match c {
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            'a'..='z' | '0'..='9' => Some(c),
            '-' | '.' | '_' => Some('-'),
            _ => None,
        })
        .collect();
    // Everything left is ASCII, so byte indexing is char indexing.
    let trimmed = mapped.trim_start_matches('-');
    let size = trimmed.len().min(MAX_LABEL);
    let head = trimmed[..size].trim_end_matches('-');
    if head.len() == size {
        return head.to_owned();
    }
    let tail = trimmed[size..].trim_start_matches('-');
    let refill = tail.len().min(size - head.len());
    format!("{head}{}", &tail[..refill])
}

/// Mesos-DNS's domain fragment: split at dots, make each part a label with
/// [`rfc1123_label`], drop empty ones, join with dots. `None` if nothing is
/// left. Used for task names and framework names.
pub fn domain_frag(name: &str) -> Option<String> {
    let labels: Vec<String> = name
        .split('.')
        .map(rfc1123_label)
        .filter(|l| !l.is_empty())
        .collect();
    (!labels.is_empty()).then(|| labels.join("."))
}

/// The Mesos-DNS name of a Marathon app's tasks: the whole task name as one
/// label (`/dog/big` → `big-dog`, `/My_App` → `my-app`); `None` if nothing
/// is left.
pub fn mesos_task_label(app_id: &str) -> Option<String> {
    Some(rfc1123_label(&marathon_task_name(app_id))).filter(|l| !l.is_empty())
}

/// Mesos-DNS's legacy task name, from the raw DiscoveryInfo name (made a
/// valid name label by label): `/group/app` → `app.group`,
/// `/redis-tutorial` → `redis-tutorial`, `/My_App` → `my-app`.
pub fn mesos_task_name(app_id: &str) -> Option<String> {
    domain_frag(&marathon_task_name(app_id))
}

/// z-base-32 (Zooko's human-oriented base-32) of `bytes`, bits taken from the
/// most significant end, no padding. Hand-written because it is a dozen lines
/// and there is no maintained crate for it; Mesos-DNS hashes task ids with it.
pub fn zbase32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        // Last partial group, padded with zero bits on the right.
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The task-id part of a canonical name: the first 5 characters of
/// zbase32(sha1(task id)). Mesos-DNS's tests: `test` → `iffe9`;
/// `liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5` → `4dfjd`.
pub fn task_id_hash(task_id: &str) -> String {
    let mut h = zbase32(&Sha1::digest(task_id.as_bytes()));
    h.truncate(HASH_LEN);
    h
}

/// The agent part of a canonical name: the last `-` field of the agent id,
/// lower-cased (`…-S1` → `s1`), made a valid label.
pub fn agent_id_tail(agent_id: &str) -> String {
    rfc1123_label(agent_id.rsplit('-').next().unwrap_or_default())
}

/// The canonical (per-instance) name `<task>-<h>-<s>`, for a task name as
/// [`mesos_task_name`] returns it. The suffix goes on the last label, which is
/// cut first so the label stays within 63 characters (Mesos-DNS would emit an
/// over-long, unencodable label there). No `-<s>` if the agent id is empty.
pub fn canonical_name(task_name: &str, task_id: &str, agent_id: &str) -> String {
    // A real agent id ends in `S<n>`; an odd one is cut so that at least one
    // character of the task label fits beside `-<h>-<s>` (found by fuzzing).
    let mut tail = agent_id_tail(agent_id);
    tail.truncate(MAX_LABEL - HASH_LEN - 3);
    let tail = tail.trim_end_matches('-');
    let suffix = if tail.is_empty() {
        format!("-{}", task_id_hash(task_id))
    } else {
        format!("-{}-{tail}", task_id_hash(task_id))
    };
    let (front, last) = match task_name.rsplit_once('.') {
        Some((front, last)) => (Some(front), last),
        None => (None, task_name),
    };
    let room = MAX_LABEL.saturating_sub(suffix.len());
    let last = last[..last.len().min(room)].trim_end_matches('-');
    match front {
        Some(front) => format!("{front}.{last}{suffix}"),
        None => format!("{last}{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_mesos_dns_tests() {
        // Mesos-DNS's TestHashString.
        assert_eq!(task_id_hash("test"), "iffe9");
        // Its TestInsertState: the task *named* liquor-store has this id and
        // the canonical name `liquor-store-4dfjd-0`; the other instance and
        // car-store give `zasmd` and `zinaz`.
        assert_eq!(
            task_id_hash("liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5"),
            "4dfjd"
        );
        assert_eq!(
            task_id_hash("liquor-store.b71166c1-562f-11e4-a088-c20493233aa5"),
            "zasmd"
        );
        assert_eq!(
            task_id_hash("car-store.43758382-562f-11e4-a088-c20493233aa5"),
            "zinaz"
        );
        // The bare string "liquor-store" is not that id.
        assert_eq!(task_id_hash("liquor-store"), "713fi");
    }

    #[test]
    fn zbase32_vectors() {
        // From the z-base-32 specification's examples (bit strings padded to bytes).
        assert_eq!(zbase32(&[]), "");
        assert_eq!(zbase32(&[0]), "yy");
        assert_eq!(zbase32(&[0xff]), "9h");
        assert_eq!(zbase32(b"\xf0\xbf\xc7"), "6n9hq");
        assert_eq!(zbase32(b"\xd4\x7a\x04"), "4t7ye");
        // 20 bytes → exactly 32 characters.
        assert_eq!(zbase32(&[0u8; 20]).len(), 32);
    }

    #[test]
    fn task_names_from_app_ids() {
        assert_eq!(marathon_task_name("/group/app"), "app.group");
        assert_eq!(
            mesos_task_name("/redis-tutorial").as_deref(),
            Some("redis-tutorial")
        );
        assert_eq!(mesos_task_name("/group/app").as_deref(), Some("app.group"));
        assert_eq!(mesos_task_name("/a/b/c").as_deref(), Some("c.b.a"));
        assert_eq!(mesos_task_name("/My_App").as_deref(), Some("my-app"));
        assert_eq!(
            mesos_task_name("/shop/Web!Front").as_deref(),
            Some("webfront.shop")
        );
        assert_eq!(mesos_task_name("/-x-/y").as_deref(), Some("y.x"));
        assert_eq!(mesos_task_name("/"), None);
        assert_eq!(mesos_task_name("/!!!/---"), None);
        // A dot inside a segment splits it, as Mesos-DNS splits the task name.
        assert_eq!(mesos_task_name("/a.b").as_deref(), Some("a.b"));
    }

    /// The group-app cases of mesos-dns generator_test.go TestInsertState
    /// (`big.dog` → `big-dog`) and labels_test.go TestRFC1123 / testFunc.
    #[test]
    fn task_labels_are_one_label() {
        assert_eq!(marathon_task_name("/dog/big"), "big.dog");
        assert_eq!(mesos_task_label("/dog/big").as_deref(), Some("big-dog"));
        assert_eq!(
            mesos_task_label("/store/liquor").as_deref(),
            Some("liquor-store")
        );
        assert_eq!(
            mesos_task_label("/redis-tutorial").as_deref(),
            Some("redis-tutorial")
        );
        assert_eq!(mesos_task_label("/e/d/c/b/a").as_deref(), Some("a-b-c-d-e"));
        assert_eq!(
            mesos_task_label("/angrypigs/dev/r29f").as_deref(),
            Some("r29f-dev-angrypigs")
        );
        assert_eq!(mesos_task_label("/My_App").as_deref(), Some("my-app"));
        assert_eq!(mesos_task_label("/"), None);
        assert_eq!(mesos_task_label("/!!!/---"), None);
        for (input, want) in [
            ("4abc123", "4abc123"),
            ("-4abc123", "4abc123"),
            (
                "fd%gsf---gs7-f$gs--d7fddg-123",
                "fdgsf---gs7-fgs--d7fddg-123",
            ),
            ("89fdgsf---gs7-fgs--d7fddg-", "89fdgsf---gs7-fgs--d7fddg"),
            (
                "fd%gsf---gs7-f$gs--d7fddg123456789012345678901234567890123456789-123",
                "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
            ),
            ("a.c.d_de.", "a-c-d-de"),
            ("---a---b", "a---b"),
        ] {
            assert_eq!(rfc1123_label(input), want, "{input}");
        }
    }

    #[test]
    fn labels_follow_mesos_dns() {
        assert_eq!(rfc1123_label("Hello_World.x"), "hello-world-x");
        assert_eq!(rfc1123_label("--a--"), "a");
        assert_eq!(rfc1123_label("r€dis!"), "rdis");
        assert_eq!(rfc1123_label(""), "");
        let long = "a".repeat(100);
        assert_eq!(rfc1123_label(&long).len(), 63);
        // Cut lands on dashes: trimmed, then refilled from what follows.
        let s = format!("{}--bcd", "a".repeat(62));
        assert_eq!(rfc1123_label(&s), format!("{}b", "a".repeat(62)));
        assert_eq!(domain_frag("Marathon").as_deref(), Some("marathon"));
        assert_eq!(domain_frag("a..b.").as_deref(), Some("a.b"));
    }

    #[test]
    fn canonical_names() {
        assert_eq!(
            agent_id_tail("5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S1"),
            "s1"
        );
        assert_eq!(agent_id_tail("S7"), "s7");
        let h = task_id_hash("liquor-store");
        assert_eq!(
            canonical_name(
                "liquor-store",
                "liquor-store.b8db9f73-562f-11e4-a088-c20493233aa5",
                "20140803-125133-3041283216-5050-2410-0"
            ),
            "liquor-store-4dfjd-0"
        );
        assert_eq!(
            canonical_name("redis-tutorial", "liquor-store", "x-S1"),
            format!("redis-tutorial-{h}-s1")
        );
        assert_eq!(
            canonical_name("app.group", "liquor-store", "x-S2"),
            format!("app.group-{h}-s2")
        );
        assert_eq!(
            canonical_name("app", "liquor-store", ""),
            format!("app-{h}")
        );
        let long = "a".repeat(63);
        let c = canonical_name(&format!("x.{long}"), "liquor-store", "x-S1");
        let last = c.rsplit('.').next().unwrap();
        assert_eq!(last.len(), 63);
        assert!(last.ends_with(&format!("-{h}-s1")));
        assert!(c.starts_with("x."));
        // A long agent-id tail still leaves a valid label.
        let c = canonical_name("app", "id", &format!("x-{}", "s".repeat(80)));
        assert_eq!(c.len(), 63);
        assert!(c.starts_with("a-") && !c.ends_with('-'), "{c}");
    }
}
