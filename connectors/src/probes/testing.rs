//! What the probe tests share: checks on loopback, a closed port, a probe environment.

use std::time::Duration;

use siteward_config::{Check, Host, HostPort, Placement, Probe};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::net::{ProbeEnv, Resolver};
use crate::Outcome;

/// `127.0.0.1:port`.
pub(crate) fn local(port: u16) -> HostPort {
    HostPort {
        host: Host::Ip("127.0.0.1".parse().unwrap()),
        port,
    }
}

/// A check named `t` running `probe` with `timeout_ms`, rise and fall 1.
pub(crate) fn check(probe: Probe, timeout_ms: u64) -> Check {
    Check {
        name: "t".into(),
        interval: Duration::from_secs(60),
        timeout: Duration::from_millis(timeout_ms),
        rise: 1,
        fall: 1,
        placement: Placement::default(),
        probe,
    }
}

/// One run through [`crate::probes::run`], as the engine does it (timeout and timing).
pub(crate) async fn run(check: &Check) -> Outcome {
    crate::probes::run(check, &Resolver::from_system().unwrap()).await
}

/// A port nothing listens on (bound, then released).
pub(crate) async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// What a probe function needs to be called directly: `TestEnv::new(500).env()`.
pub(crate) struct TestEnv {
    resolver: Resolver,
    placement: Placement,
    deadline: Instant,
}

impl TestEnv {
    pub(crate) fn new(timeout_ms: u64) -> Self {
        TestEnv {
            resolver: Resolver::from_system().unwrap(),
            placement: Placement::default(),
            deadline: Instant::now() + Duration::from_millis(timeout_ms),
        }
    }

    pub(crate) fn env(&self) -> ProbeEnv<'_> {
        ProbeEnv {
            resolver: &self.resolver,
            placement: &self.placement,
            deadline: self.deadline,
        }
    }
}
