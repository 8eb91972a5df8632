//! ARCHITECTURE.md says who writes and reads every pinned map, and
//! docs/architecture/maps.md gives each one's layout: a map added without
//! both fails here.
use l4lb_common::ALL_MAPS;

const OVERVIEW: &str = include_str!("../../ARCHITECTURE.md");
const LAYOUTS: &str = include_str!("../../docs/architecture/maps.md");

/// The table rows (lines starting with `|`) of a document.
fn table_rows(doc: &str) -> Vec<&str> {
    doc.lines().filter(|l| l.starts_with('|')).collect()
}

fn missing_from(doc: &str) -> Vec<&'static str> {
    let rows = table_rows(doc);
    ALL_MAPS
        .iter()
        .copied()
        .filter(|name| {
            let quoted = format!("`{name}`");
            !rows.iter().any(|row| row.contains(&quoted))
        })
        .collect()
}

#[test]
fn the_overview_has_a_writer_row_for_every_pinned_map() {
    assert_eq!(missing_from(OVERVIEW), Vec::<&str>::new());
}

#[test]
fn the_layouts_page_has_a_row_for_every_pinned_map() {
    assert_eq!(missing_from(LAYOUTS), Vec::<&str>::new());
}
