//! The fake Mesos master the `l4lb-fake-mesos` binary runs: `model` the
//! operator API JSON, `server` the Mesos and control endpoints.
pub mod model;
pub mod server;
