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

/// An `[uplink]` toward a test platform at `url` trusting `ca_file`, with a token.
#[cfg(test)]
pub(crate) fn test_config(url: String, ca_file: &std::path::Path) -> siteward_config::Uplink {
    siteward_config::Uplink {
        url,
        token: Some(siteward_config::Secret::new("platform-token-0123456789")),
        client_cert: None,
        ca_file: Some(ca_file.to_path_buf()),
        batch_max_events: 10,
        batch_max_bytes: 1 << 20,
        batch_max_wait: std::time::Duration::from_millis(10),
        timeout: std::time::Duration::from_secs(5),
        status_interval: None,
    }
}
