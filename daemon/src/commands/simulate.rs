//! `siteward simulate <kind> --listen ADDR`: the protocol simulators as a command, for
//! tests and for checking a firewall path (as SAP's `niping -s` is used).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use siteward_connectors::simulate::{asterisk_ami, oracle_tns, sap_ni, saprouter};
use siteward_connectors::simulate::{platform, sip};
use tokio::net::TcpListener;
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub kind: SimulatorKind,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum SimulatorKind {
    /// An Oracle TNS listener: answers the TNS ping and connects to known services.
    OracleTns {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        options: oracle_tns::Options,
    },
    /// An SAP NI peer (gateway, message server, `niping -s`): answers NI_PING with NI_PONG.
    SapNi {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        options: sap_ni::Options,
    },
    /// An SAProuter: accepts or refuses NI route requests.
    Saprouter {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        options: saprouter::Options,
    },
    /// An Asterisk manager interface (AMI): login, ping, logoff, events.
    AsteriskAmi {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        options: asterisk_ami::Options,
    },
    /// A SIP peer (a PBX's SIP stack) answering OPTIONS over UDP and TCP on one port.
    Sip {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        options: sip::Options,
    },
    /// A receiver of the uplink (HTTPS, bearer token), standing in for the cloud
    /// platform: counts and deduplicates events, answers per the uplink HTTP contract.
    Platform {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        options: platform::Options,
    },
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on, e.g. 127.0.0.1:1521 (port 0 picks a free port; the log says which).
    #[arg(long)]
    pub listen: SocketAddr,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(&args.log)?;
    super::runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
            stop.cancel();
        });
        match args.kind {
            SimulatorKind::OracleTns { listen, options } => {
                oracle_tns::serve(bind(&listen, "oracle-tns").await?, options, shutdown).await
            }
            SimulatorKind::SapNi { listen, options } => {
                sap_ni::serve(bind(&listen, "sap-ni").await?, options, shutdown).await
            }
            SimulatorKind::Saprouter { listen, options } => {
                saprouter::serve(bind(&listen, "saprouter").await?, options, shutdown).await
            }
            SimulatorKind::AsteriskAmi { listen, options } => {
                asterisk_ami::serve(bind(&listen, "asterisk-ami").await?, options, shutdown).await
            }
            SimulatorKind::Sip { listen, options } => {
                let (udp, tcp) = bind_udp_and_tcp(&listen, "sip").await?;
                sip::serve(udp, tcp, options, shutdown).await
            }
            SimulatorKind::Platform { listen, options } => {
                platform::serve(bind(&listen, "platform").await?, options, shutdown).await
            }
        }
        .context("serving the simulator")?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn bind(args: &ListenArgs, kind: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the {kind} simulator to {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(listener = kind, addr = %bound, "listening");
    Ok(listener)
}

/// A UDP socket on `args.listen` and a TCP listener on the same address and port (the
/// port the kernel gave the UDP socket, when 0 was asked for), as SIP listens on both.
async fn bind_udp_and_tcp(
    args: &ListenArgs,
    kind: &str,
) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(args.listen)
        .await
        .with_context(|| format!("binding the {kind} simulator to UDP {}", args.listen))?;
    let bound = udp
        .local_addr()
        .context("reading the UDP socket's address")?;
    let tcp = TcpListener::bind(bound)
        .await
        .with_context(|| format!("binding the {kind} simulator to TCP {bound}"))?;
    tracing::info!(listener = kind, addr = %bound, "listening");
    Ok((udp, tcp))
}
