//! Plain-text tables, the machine line and the BENCHMARKS.md section writer.
use std::process::Command;

use anyhow::{Context, Result};

use crate::util;

/// Renders rows as a left-aligned first column and right-aligned others.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Replaces the section between `<!-- BEGIN {id} -->` and `<!-- END {id} -->`
/// in `doc`, or appends it; `body` goes between the markers.
pub fn replace_section(doc: &str, id: &str, body: &str) -> String {
    let begin = format!("<!-- BEGIN {id} -->");
    let end = format!("<!-- END {id} -->");
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    if let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end))
        && b < e
    {
        return format!("{}{}{}", &doc[..b], block, &doc[e + end.len()..]);
    }
    let mut out = if doc.is_empty() {
        "# Benchmarks\n".to_string()
    } else {
        doc.to_string()
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&block);
    out.push('\n');
    out
}

/// The same rows as a Markdown table.
pub fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    ));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// nproc, kernel and CPU model, for benchmark reports.
pub fn machine_info() -> Vec<(&'static str, String)> {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    vec![("nproc", nproc), ("kernel", kernel), ("cpu", cpu)]
}

/// nproc, kernel, CPU model and load average as one line: other work is the
/// main noise on 2 shared cores, so every report says how busy the machine was.
pub fn machine_line() -> String {
    let mut m = machine_info();
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        m.push((
            "loadavg",
            l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        ));
    }
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Today's UTC date (`date -u +%Y-%m-%d`), for the `{date}` of a section.
pub fn utc_date() -> Result<String> {
    util::stdout(Command::new("date").args(["-u", "+%Y-%m-%d"])).map(|d| d.trim().to_string())
}

/// [`utc_date`], or `?` if `date` fails: for reports that go on without it.
pub fn today() -> String {
    utc_date().unwrap_or_else(|_| "?".into())
}

/// Replaces (or appends) section `id` of BENCHMARKS.md; `{date}` in `body`
/// becomes `date`.
pub fn write_section(id: &str, body: &str, date: &str) -> Result<()> {
    let path = util::workspace_root().join("BENCHMARKS.md");
    let body = body.replace("{date}", date);
    // Re-read right before writing: other benchmarks write other sections.
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, replace_section(&old, id, &body))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote section \"{id}\" of {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_then_replaces() {
        let a = replace_section("", "x", "one");
        assert_eq!(a, "# Benchmarks\n\n<!-- BEGIN x -->\none\n<!-- END x -->\n");
        let b = replace_section(&(a.clone() + "\ntail\n"), "x", "two\n");
        assert_eq!(
            b,
            "# Benchmarks\n\n<!-- BEGIN x -->\ntwo\n<!-- END x -->\n\ntail\n"
        );
        let c = replace_section(&b, "y", "other");
        assert!(c.contains("two") && c.ends_with("<!-- BEGIN y -->\nother\n<!-- END y -->\n"));
    }

    #[test]
    fn table_aligns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxyz   1\n");
    }
}
