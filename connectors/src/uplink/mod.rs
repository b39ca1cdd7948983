//! Delivering the spool's events to the cloud platform.
//!
//! - [`batch`]: the JSON body of a delivery (ids, times, payloads).
//! - [`policy`]: what an answer means (delivered, retry when, dead letter) and the
//!   circuit breaker, without I/O.

pub mod batch;
pub mod policy;
