//! `http` (being written).

use siteward_config::HttpProbe;

use crate::net::ProbeEnv;
use crate::{Failure, ProbeResult, Reason};

pub async fn probe(_p: &HttpProbe, _env: &ProbeEnv<'_>) -> ProbeResult {
    Err(Failure::new(
        Reason::IoError,
        "probe kind under construction",
    ))
}
