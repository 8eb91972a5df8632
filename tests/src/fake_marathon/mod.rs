//! The fake Marathon: the model and client the tests drive it with, and the
//! server the `l4lb-fake-marathon` binary runs (`api` the Marathon API,
//! `control` the scripting API, `state` apps, pods, events and faults, `served` what it served).
pub mod api;
pub mod client;
pub mod control;
pub mod model;
pub mod served;
pub mod state;
