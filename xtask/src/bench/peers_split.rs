//! What the l4lb programs cost a VIP connect inside `bench peers`' mixed
//! cycle (seven connections, HAProxy's and two DNAT paths among them), where
//! their maps are colder than in `bench socket`'s two-target cycle. The
//! kernel's run-time accounting only sums over every connect of the cgroup,
//! so the cycle runs twice more, once as measured and once with l4lb's
//! target replaced by a direct connection (every connect4 a miss): the
//! difference, per VIP connect, is what the VIP adds to the programs.
use std::time::Instant;

use anyhow::Result;
use l4lb_tests::Sandbox;

use super::{bpf_stats, common::PROBE_TIMEOUT};
use crate::probe;

/// Summed program time of `name` in `costs`, and its runs.
fn of(costs: &[bpf_stats::ProgCost], name: &str) -> (f64, f64) {
    costs
        .iter()
        .filter(|c| c.name == name)
        .fold((0.0, 0.0), |(t, r), c| {
            (t + c.run_time_ns as f64, r + c.runs as f64)
        })
}

/// (connect4 ns per miss, connect4 ns per VIP hit, sock_ops + sock_release
/// ns a VIP connection adds) from the program costs of the run with the VIP
/// (`with`) and without (`without`), each with `hits` VIP connects.
pub(crate) fn split(
    with: &[bpf_stats::ProgCost],
    without: &[bpf_stats::ProgCost],
    hits: f64,
) -> (f64, f64, f64) {
    let (c_with, _) = of(with, "l4lb_connect4");
    let (c_without, runs_without) = of(without, "l4lb_connect4");
    let miss = c_without / runs_without.max(1.0);
    let hit = miss + (c_with - c_without) / hits;
    // The socket's callbacks and its release, as one: what the VIP adds
    // to the programs that follow a connection.
    let follow = |costs: &[bpf_stats::ProgCost]| {
        of(costs, l4lb_common::SOCK_OPS_PROGRAM).0 + of(costs, l4lb_common::SOCK_RELEASE_PROGRAM).0
    };
    (miss, hit, (follow(with) - follow(without)) / hits)
}

/// Runs the cycle `with` the VIP and `without` (same length), twice each
/// (with, without, without, with: a drift hits both alike); one report line.
pub(crate) fn vip_in_the_mix(
    sb: &Sandbox,
    with: &[&str],
    without: &[&str],
    rotate: usize,
    n: u32,
    deadline: Instant,
) -> Result<String> {
    let run = |to: &[&str]| -> Result<Vec<bpf_stats::ProgCost>> {
        let before = bpf_stats::pinned_program_costs(sb.pin_root())?;
        probe::latency_per_conn(sb, to, n, rotate, PROBE_TIMEOUT, deadline)?;
        Ok(bpf_stats::delta(
            &before,
            &bpf_stats::pinned_program_costs(sb.pin_root())?,
        ))
    };
    let mut w = run(with)?;
    let mut wo = run(without)?;
    wo.extend(run(without)?);
    w.extend(run(with)?);
    let hits = 2.0 * f64::from(n + probe::WARMUP);
    let (miss, hit, sockops) = split(&w, &wo, hits);
    Ok(format!(
        "the programs inside this mixed cycle (2 x 2 more runs of {n} cycles, l4lb's target in place or \
         replaced by a direct connection): l4lb_connect4 {miss:.0} ns per miss and {hit:.0} ns per VIP \
         connect, l4lb_sockops + l4lb_release {sockops:.0} ns more per VIP connection than per direct one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(name: &str, runs: u64, ns: u64) -> bpf_stats::ProgCost {
        bpf_stats::ProgCost {
            name: name.into(),
            runs,
            run_time_ns: ns,
        }
    }

    #[test]
    fn the_vip_share_is_the_difference_per_vip_connect() {
        // 10 cycles of 7 connects; without the VIP every connect4 costs 400;
        // with it, one per cycle costs 2,400 (2,000 more), and its socket's
        // callbacks and releases 500 ns more in all.
        let without = [
            cost("l4lb_connect4", 70, 28_000),
            cost("l4lb_sockops", 350, 35_000),
            cost("l4lb_release", 70, 3_500),
        ];
        let with = [
            cost("l4lb_connect4", 70, 48_000),
            cost("l4lb_sockops", 350, 39_000),
            cost("l4lb_release", 70, 4_500),
        ];
        let (miss, hit, sockops) = split(&with, &without, 10.0);
        assert_eq!((miss, hit, sockops), (400.0, 2_400.0, 500.0));
    }
}
