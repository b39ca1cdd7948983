//! Siteward's health checks and the protocol code behind them.
//!
//! - [`protocol`]: pure codecs for the wire formats (Oracle TNS, SAP NI, Asterisk AMI,
//!   SIP). No I/O, so they are unit-, property- and fuzz-tested on their own.
//! - [`probes`]: one module per check kind; each opens sockets through [`net`], speaks
//!   its protocol and returns an [`Observation`] or a [`Failure`] with a [`Reason`].
//! - [`engine`]: schedules every configured check, applies rise/fall, keeps history and
//!   counters, runs a check on demand, and applies a reloaded config as a diff.
//! - [`simulate`]: servers that stand in for peers that cannot be installed here
//!   (TNS listener, SAP gateway/SAProuter, Asterisk AMI), with failure modes.
//! - [`spool`]: the durable store-and-forward queue of events the relay connectors accept.
//! - [`uplink`]: delivering the spool to the cloud platform (batch format, retry policy).
//! - [`relay`]: `[[relays]]`, TCP relays toward on-prem services, zero-copy (splice).
//! - [`text`]: cutting text to a length in bytes at a character boundary.
#![forbid(unsafe_code)]

pub mod engine;
pub mod http_server;
pub mod net;
mod outcome;
pub mod probes;
pub mod protocol;
pub mod relay;
pub mod running;
pub mod simulate;
pub mod sources;
pub mod spool;
#[cfg(test)]
mod test_util;
pub mod text;
pub mod uplink;

pub use outcome::{Failure, Observation, Outcome, ProbeResult, Reason};
