//! How the packet path follows a TCP flow to its end, so a finished flow's
//! connection-table and reverse-NAT entries go at once instead of waiting for
//! LRU eviction. Pure: XDP (client → backend) and the tc reply program
//! (backend → client) both call [`close_step`] with the packet's TCP flags and
//! the flow's close bits, and act on the answer.
//!
//! The close bits ([`FLOW_FIN_CLIENT`], [`FLOW_FIN_BACKEND`]) sit in both
//! entries of a flow (`FlowValue::flags`, `FlowRevNatValue::flags`) and are
//! written only on the first FIN of each side, so an established flow costs
//! no map write. The flow ends on a RST, or on the last ACK: a packet without
//! FIN or SYN, once both sides have sent theirs, from the side that closed
//! first ([`FLOW_FIRST_CLIENT`], [`FLOW_FIRST_BACKEND`], set with its FIN when
//! the other side's was not seen yet; both in a simultaneous close). The
//! other side's ACK of that first FIN does not end it: sent just before its
//! own FIN, it may reach the program after it (a veth has a queue per CPU,
//! and the two packets leave from different CPUs), and ending there let the
//! closer's real last ACK, a moment later, record the flow again. A packet
//! of the flow that still arrives after its end (held in a busy CPU's
//! backlog) is treated as a flow whose entry was evicted: recorded again on
//! the same Maglev pick (not a FIN or RST: [`may_open`]), left to the LRU.

/// The client sent a FIN (seen by XDP).
pub const FLOW_FIN_CLIENT: u32 = 1;
/// The backend sent a FIN (seen by the tc reply program).
pub const FLOW_FIN_BACKEND: u32 = 2;
/// Both sides have closed.
pub const FLOW_FIN_BOTH: u32 = FLOW_FIN_CLIENT | FLOW_FIN_BACKEND;
/// The client's FIN came first (or at the same time as the backend's).
pub const FLOW_FIRST_CLIENT: u32 = FLOW_FIN_CLIENT << FIRST_SHIFT;
/// The backend's FIN came first (or at the same time as the client's).
pub const FLOW_FIRST_BACKEND: u32 = FLOW_FIN_BACKEND << FIRST_SHIFT;
/// From a side's FIN bit to its "closed first" bit.
const FIRST_SHIFT: u32 = 2;

/// TCP header flag bits (the header's 14th byte).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
/// Offset of the flags byte inside the TCP header.
pub const TCP_FLAGS_OFF: usize = 13;

/// What a packet of a tracked TCP flow does to the flow's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseStep {
    /// Nothing to write (every packet of an established flow).
    Keep,
    /// Set this close bit in both entries (this side's first FIN).
    Mark(u32),
    /// Remove both entries (after translating this packet).
    End,
}

/// The step for a packet with TCP flags `tcp` on a flow whose close bits are
/// `flags`, sent by the side whose bit (`FLOW_FIN_*`) is `side`.
#[inline(always)]
pub fn close_step(tcp: u8, flags: u32, side: u32) -> CloseStep {
    if tcp & TCP_RST != 0 {
        return CloseStep::End;
    }
    let first = side << FIRST_SHIFT;
    if tcp & TCP_FIN != 0 {
        if flags & side != 0 {
            return CloseStep::Keep;
        }
        let other = FLOW_FIN_BOTH ^ side;
        return CloseStep::Mark(if flags & other == 0 {
            side | first
        } else {
            side
        });
    }
    if flags & FLOW_FIN_BOTH == FLOW_FIN_BOTH && flags & first != 0 && tcp & TCP_SYN == 0 {
        return CloseStep::End;
    }
    CloseStep::Keep
}

/// A SYN without ACK (a client opening a connection).
#[inline(always)]
pub fn is_syn(tcp: u8) -> bool {
    tcp & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// A tracked flow whose close bits are set sees a new SYN on the same
/// 5-tuple (the client reused the port): the old entry is stale, the packet
/// starts a new flow.
#[inline(always)]
pub fn reopens(tcp: u8, flags: u32) -> bool {
    flags != 0 && is_syn(tcp)
}

/// Whether a packet that found no entry may create one: not a FIN or RST
/// (the tail of a flow already removed must not bring it back).
#[inline(always)]
pub fn may_open(tcp: u8) -> bool {
    tcp & (TCP_FIN | TCP_RST) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK: u8 = TCP_ACK;
    const FIN_ACK: u8 = TCP_FIN | TCP_ACK;
    const C: u32 = FLOW_FIN_CLIENT;
    const B: u32 = FLOW_FIN_BACKEND;
    const C1: u32 = FLOW_FIN_CLIENT | FLOW_FIRST_CLIENT;
    const B1: u32 = FLOW_FIN_BACKEND | FLOW_FIRST_BACKEND;

    /// Runs a packet sequence (sender bit, TCP flags) through `close_step`
    /// like the two programs do; returns the step of every packet.
    fn run(packets: &[(u32, u8)]) -> Vec<CloseStep> {
        let mut flags = 0;
        let mut ended = false;
        let mut out = Vec::new();
        for &(side, tcp) in packets {
            assert!(!ended, "a packet after the flow ended");
            let step = close_step(tcp, flags, side);
            match step {
                CloseStep::Mark(bit) => flags |= bit,
                CloseStep::End => ended = true,
                CloseStep::Keep => {}
            }
            out.push(step);
        }
        out
    }

    #[test]
    fn established_packets_write_nothing() {
        for tcp in [ACK, ACK | 0x08, TCP_SYN, TCP_SYN | ACK] {
            for side in [C, B] {
                assert_eq!(close_step(tcp, 0, side), CloseStep::Keep, "{tcp:#x}");
            }
        }
    }

    #[test]
    fn client_closes_first_ends_on_its_last_ack() {
        let steps = run(&[(C, FIN_ACK), (B, ACK), (B, FIN_ACK), (C, ACK)]);
        assert_eq!(
            steps,
            [
                CloseStep::Mark(C1),
                CloseStep::Keep,
                CloseStep::Mark(B),
                CloseStep::End
            ]
        );
    }

    #[test]
    fn backend_closes_first_ends_on_its_last_ack() {
        let steps = run(&[(B, FIN_ACK), (C, ACK), (C, FIN_ACK), (B, ACK)]);
        assert_eq!(
            steps,
            [
                CloseStep::Mark(B1),
                CloseStep::Keep,
                CloseStep::Mark(C),
                CloseStep::End
            ]
        );
    }

    /// The backend's ACK of the client's FIN, overtaken by its own FIN (two
    /// veth queues): not the last ACK, the client's that follows is.
    #[test]
    fn the_second_closers_ack_after_its_fin_does_not_end() {
        for (first, second) in [(C, B), (B, C)] {
            let steps = run(&[
                (first, FIN_ACK),
                (second, FIN_ACK),
                (second, ACK),
                (first, ACK),
            ]);
            assert_eq!(
                steps,
                [
                    CloseStep::Mark(first | first << FIRST_SHIFT),
                    CloseStep::Mark(second),
                    CloseStep::Keep,
                    CloseStep::End
                ]
            );
        }
    }

    /// Both FINs cross (each program saw no FIN of the other side): both are
    /// first, and either side's ACK ends the flow.
    #[test]
    fn a_simultaneous_close_ends_on_either_ack() {
        assert_eq!(close_step(FIN_ACK, 0, C), CloseStep::Mark(C1));
        assert_eq!(close_step(FIN_ACK, 0, B), CloseStep::Mark(B1));
        for side in [C, B] {
            assert_eq!(close_step(ACK, C1 | B1, side), CloseStep::End);
        }
    }

    #[test]
    fn a_retransmitted_fin_writes_once() {
        let steps = run(&[(C, FIN_ACK), (C, FIN_ACK), (B, ACK)]);
        assert_eq!(
            steps,
            [CloseStep::Mark(C1), CloseStep::Keep, CloseStep::Keep]
        );
    }

    #[test]
    fn rst_from_either_side_ends_at_once() {
        assert_eq!(close_step(TCP_RST, 0, C), CloseStep::End);
        assert_eq!(close_step(TCP_RST | ACK, C, B), CloseStep::End);
    }

    #[test]
    fn a_new_syn_on_a_closed_tuple_reopens_and_only_syn_opens_after_fin() {
        assert!(reopens(TCP_SYN, C));
        assert!(!reopens(TCP_SYN, 0));
        assert!(!reopens(TCP_SYN | ACK, C1 | B));
        assert!(!may_open(FIN_ACK));
        assert!(!may_open(TCP_RST));
        assert!(may_open(ACK) && may_open(TCP_SYN));
    }
}
