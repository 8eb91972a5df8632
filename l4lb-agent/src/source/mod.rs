//! Where the desired state comes from. Each source produces complete
//! `DesiredState`s; a source that fails produces nothing (the last good table stays).
pub mod config_file;
pub mod static_file;
