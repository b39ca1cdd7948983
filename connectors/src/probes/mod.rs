//! One module per check kind. Each exposes `async fn probe(params, env) -> ProbeResult`;
//! [`run`] picks the module for a [`Probe`] and enforces the timeout.

use std::time::{Instant as StdInstant, SystemTime};

use siteward_config::{Check, Probe};

use crate::net::{ProbeEnv, Resolver};
use crate::{Failure, Outcome, Reason};

pub mod asterisk_ami;
pub mod dns;
pub mod http;
pub mod icmp;
pub mod oracle_tns;
pub mod sap_ni;
pub mod saprouter;
pub mod sip_options;
pub mod tcp;
#[cfg(test)]
mod testing;
pub mod tls;
pub(crate) mod tls_client;

/// Runs one check once, bounded by its timeout, and times it.
pub async fn run(check: &Check, resolver: &Resolver) -> Outcome {
    let at = SystemTime::now();
    let started = StdInstant::now();
    let deadline = tokio::time::Instant::now() + check.timeout;
    let env = ProbeEnv {
        resolver,
        placement: &check.placement,
        deadline,
    };
    let result = match tokio::time::timeout_at(deadline, dispatch(&check.probe, &env)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            Reason::Timeout,
            format!("no complete answer within {:?}", check.timeout),
        )),
    };
    Outcome::from_result(result, started.elapsed(), at)
}

async fn dispatch(probe: &Probe, env: &ProbeEnv<'_>) -> crate::ProbeResult {
    match probe {
        Probe::Tcp(p) => tcp::probe(p, env).await,
        Probe::Tls(p) => tls::probe(p, env).await,
        Probe::Http(p) => http::probe(p, env).await,
        Probe::Dns(p) => dns::probe(p, env).await,
        Probe::Icmp(p) => icmp::probe(p, env).await,
        Probe::OracleTns(p) => oracle_tns::probe(p, env).await,
        Probe::SapNi(p) => sap_ni::probe(p, env).await,
        Probe::Saprouter(p) => saprouter::probe(p, env).await,
        Probe::AsteriskAmi(p) => asterisk_ami::probe(p, env).await,
        Probe::SipOptions(p) => sip_options::probe(p, env).await,
    }
}
