//! Marathon source: full sync + event stream → catalogs.
pub mod apps;
pub mod parse;
