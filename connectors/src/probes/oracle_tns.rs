//! `oracle_tns` (being written).

use siteward_config::OracleTnsProbe;

use crate::net::ProbeEnv;
use crate::{Failure, ProbeResult, Reason};

pub async fn probe(_p: &OracleTnsProbe, _env: &ProbeEnv<'_>) -> ProbeResult {
    Err(Failure::new(
        Reason::IoError,
        "probe kind under construction",
    ))
}
