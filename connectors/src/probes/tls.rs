//! `tls` (being written).

use siteward_config::TlsProbe;

use crate::net::ProbeEnv;
use crate::{Failure, ProbeResult, Reason};

pub async fn probe(_p: &TlsProbe, _env: &ProbeEnv<'_>) -> ProbeResult {
    Err(Failure::new(
        Reason::IoError,
        "probe kind under construction",
    ))
}
