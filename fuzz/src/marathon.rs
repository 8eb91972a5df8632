//! The agent's pure Marathon modules (not `client`/`source`/`args`: reqwest,
//! clap). Paths are relative to `src/`.
#[path = "../../l4lb-agent/src/marathon/apps.rs"]
pub mod apps;
#[path = "../../l4lb-agent/src/marathon/body.rs"]
pub mod body;
#[path = "../../l4lb-agent/src/marathon/decode.rs"]
pub mod decode;
#[path = "../../l4lb-agent/src/marathon/events.rs"]
pub mod events;
#[path = "../../l4lb-agent/src/marathon/origin.rs"]
pub mod origin;
#[path = "../../l4lb-agent/src/marathon/parse.rs"]
pub mod parse;
#[path = "../../l4lb-agent/src/marathon/pod_part.rs"]
pub mod pod_part;
#[path = "../../l4lb-agent/src/marathon/pods.rs"]
pub mod pods;
#[path = "../../l4lb-agent/src/marathon/sse_limit.rs"]
pub mod sse_limit;
