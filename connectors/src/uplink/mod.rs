//! Delivering the spool's events to the cloud platform.
//!
//! - [`batch`]: the JSON body of a delivery (ids, times, payloads).
//! - [`client`]: the HTTPS client that posts a batch and reports the platform's answer.
//! - [`deliver`]: the loop that empties the spool through the client, by the policy.
//! - [`policy`]: what an answer means (delivered, retry when, dead letter) and the
//!   circuit breaker, without I/O.

pub mod batch;
pub mod client;
pub mod deliver;
pub mod policy;
