//! `dns` (being written).

use siteward_config::DnsProbe;

use crate::net::ProbeEnv;
use crate::{Failure, ProbeResult, Reason};

pub async fn probe(_p: &DnsProbe, _env: &ProbeEnv<'_>) -> ProbeResult {
    Err(Failure::new(
        Reason::IoError,
        "probe kind under construction",
    ))
}
