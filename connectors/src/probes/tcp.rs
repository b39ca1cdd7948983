//! `tcp`: the port accepts a connection.

use siteward_config::TcpProbe;

use crate::net::ProbeEnv;
use crate::{Observation, ProbeResult};

pub async fn probe(p: &TcpProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let stream = env.connect_tcp(&p.target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    Ok(Observation::new(format!("connected to {peer}")))
}
