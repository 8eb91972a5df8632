//! Reading the agent's table (`l4lb-agent vips --json`, see
//! [`Agent::vips_json`](crate::Agent::vips_json)): an array of rows with
//! `vip`, `proto`, `revision`, counters, and `backends` (`addr`, `weight`,
//! counters).
use serde_json::Value;

/// The row of `vip` (as the table prints it) and `proto` (`tcp`, `udp`).
pub fn row<'a>(table: &'a Value, vip: &str, proto: &str) -> &'a Value {
    table
        .as_array()
        .unwrap_or_else(|| panic!("not a table: {table}"))
        .iter()
        .find(|r| r["vip"] == vip && r["proto"] == proto)
        .unwrap_or_else(|| panic!("{vip}/{proto} not in {table}"))
}

/// A row's backends as (address, weight), in table order.
pub fn backends(row: &Value) -> Vec<(String, u64)> {
    row["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no backends in {row}"))
        .iter()
        .map(|b| {
            (
                b["addr"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The sum of a per-backend counter (`connects`, `flows`, …) over a row's backends.
pub fn backend_total(row: &Value, counter: &str) -> u64 {
    row["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no backends in {row}"))
        .iter()
        .map(|b| b[counter].as_u64().unwrap())
        .sum()
}

/// The row serving `backend` (`ip:port` as the table prints it), if any.
pub fn row_of<'a>(table: &'a Value, backend: &str) -> Option<&'a Value> {
    table.as_array()?.iter().find(|r| {
        r["backends"]
            .as_array()
            .is_some_and(|bs| bs.iter().any(|b| b["addr"] == backend))
    })
}

/// The VIP (`ip:port`) of the row serving `backend`, if any.
pub fn vip_of(table: &Value, backend: &str) -> Option<String> {
    row_of(table, backend)?["vip"].as_str().map(str::to_owned)
}
