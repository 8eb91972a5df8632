//! Debian's `dig` (what users run) from inside a sandbox's netns, against
//! the agent's DNS listener or another server, and bounded waits for an
//! answer. One `dig` is one try of at most 2 s.
use std::time::Duration;

use crate::{Sandbox, wait};

/// Where the kernel tests' agents answer DNS (`--dns-listen 127.0.0.1:5353`).
pub const AGENT_DNS: (&str, u16) = ("127.0.0.1", 5353);

impl Sandbox {
    /// `dig @SERVER -p PORT +time=2 +tries=1 ARGS…` in the netns; its
    /// stdout, and whether dig got a reply at all (exit status 0).
    pub fn dig_at(&self, server: &str, port: u16, args: &[&str]) -> (String, bool) {
        let out = self
            .in_netns("dig")
            .args([&format!("@{server}"), "-p", &port.to_string()])
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running dig (is it installed?): {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text, out.status.success())
    }

    /// `dig ARGS…` against the agent's listener: its whole stdout.
    pub fn dig(&self, args: &[&str]) -> String {
        self.dig_at(AGENT_DNS.0, AGENT_DNS.1, args).0
    }

    /// The answers of `dig +short NAME TYPE` against the agent, trimmed and
    /// sorted (none: NXDOMAIN or no data); Err (dig's output) on no reply.
    pub fn dig_short(&self, name: &str, rtype: &str) -> Result<Vec<String>, String> {
        let (text, replied) = self.dig_at(AGENT_DNS.0, AGENT_DNS.1, &["+short", name, rtype]);
        if !replied {
            return Err(format!("dig {name} {rtype}: no reply: {text}"));
        }
        let mut answers: Vec<String> = text
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        answers.sort();
        Ok(answers)
    }

    /// The response code of `dig NAME TYPE` against the agent (`NOERROR`,
    /// `NXDOMAIN`, …); panics when there is none.
    pub fn dig_status(&self, name: &str, rtype: &str) -> String {
        let text = self.dig(&[name, rtype]);
        text.split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or_else(|| panic!("dig {name} {rtype}: no status in {text}"))
            .to_owned()
    }

    /// Repeats `dig ARGS…` against the agent until `pred` holds on its
    /// output, which it returns; panics after `bound` naming `what`.
    pub fn wait_dig(
        &self,
        args: &[&str],
        what: &str,
        bound: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let what = format!("{what} (dig {args:?})");
        wait::until(&what, bound, || {
            let out = self.dig(args);
            if pred(&out) { Ok(out) } else { Err(out) }
        })
    }

    /// Repeats `dig +short NAME TYPE` until `pred` holds on its sorted
    /// answers, which it returns; a try without a reply never matches.
    pub fn wait_short(
        &self,
        name: &str,
        rtype: &str,
        bound: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        wait::until(&format!("dig {name} {rtype}"), bound, || {
            let got = self.dig_short(name, rtype)?;
            if pred(&got) {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        })
    }

    /// Repeats `dig +short NAME TYPE` until its sorted answers are `want`
    /// (empty: the name does not resolve).
    pub fn wait_answers(
        &self,
        name: &str,
        rtype: &str,
        want: &[&str],
        bound: Duration,
    ) -> Vec<String> {
        let mut want: Vec<&str> = want.to_vec();
        want.sort();
        self.wait_short(name, rtype, bound, |got| got == want)
    }
}
