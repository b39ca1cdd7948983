//! `sip_options` (being written).

use siteward_config::SipOptionsProbe;

use crate::net::ProbeEnv;
use crate::{Failure, ProbeResult, Reason};

pub async fn probe(_p: &SipOptionsProbe, _env: &ProbeEnv<'_>) -> ProbeResult {
    Err(Failure::new(
        Reason::IoError,
        "probe kind under construction",
    ))
}
