//! The parts' incremental merge gives what a full merge of the same parts
//! gives, message by message on every dcos-net stream fixture and over a
//! master failover (carried parts, then dropped).
use super::*;
use crate::{
    hosts::HostTable,
    marathon::parse,
    mesos::{catalog::built, decode_message, peer_tests::lines},
};

/// Each side keeps its own allocator for the whole history, so addresses
/// compare as they are.
struct Pair {
    parts: TaskParts,
    alloc: VipAllocator,
    full_alloc: VipAllocator,
}

impl Pair {
    fn check(&mut self, at: &str) {
        let mut got = self.parts.catalog(&mut self.alloc).unwrap().fill();
        let full = parse::catalog_from_parts(self.parts.merged.parts(), &[], &mut self.full_alloc);
        let full = built(full).unwrap();
        // The persistent copy of the services (a full build has none).
        let services = got.services.take().expect("an incremental catalog");
        assert!(services.iter().eq(&got.catalog.services.services), "{at}");
        assert_eq!(got, full, "{at}");
        assert_eq!(self.parts.merged.len(), self.parts.len(), "{at}");
    }
}

fn apply(st: &mut MesosState, line: &str) {
    if let Ok(msg) = decode_message(line.as_bytes()) {
        st.apply(msg, &HostTable::default());
    }
}

#[test]
fn incremental_merge_equals_the_full_merge_message_by_message() {
    for name in crate::mesos::peer_tests::STREAMS {
        let mut pair = Pair {
            parts: TaskParts::default(),
            alloc: VipAllocator::new(),
            full_alloc: VipAllocator::new(),
        };
        let mut st = MesosState::new();
        let all = lines(name);
        for (i, line) in all.iter().enumerate() {
            apply(&mut st, line);
            let changes = st.take_changes();
            pair.parts.follow(&st, changes);
            pair.check(&format!("{name} after message {}", i + 1));
        }
        // A new leader: its SUBSCRIBED alone (recovered agents carry their
        // tasks over), then the end of the wait.
        let mut again = MesosState::new();
        apply(&mut again, &all[0]);
        let changes = again.take_changes();
        pair.parts.follow(&again, changes);
        pair.check(&format!("{name} after a new leader's snapshot"));
        pair.parts.drop_carried();
        pair.check(&format!("{name} after the carried parts went"));
    }
}
