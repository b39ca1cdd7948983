//! One `[[relays]]` relay from the command line, for bench/relay/run until the daemon
//! runs relays from its configuration. Same runtime as the daemon (multi-threaded, one
//! worker per CPU); logs to stderr; stops on SIGTERM or SIGINT.
//!
//! `cargo run --release -p siteward-connectors --example relay -- --listen 10.0.0.1:9000
//!  --target 10.0.1.2:5201 --allow 10.0.0.0/8 [--max-connections N] [--idle-timeout 10m]
//!  [--source IP] [--interface IF]`

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use siteward_config::{Host, HostPort, Placement, Relay};
use siteward_connectors::relay::{self, RelayCounters};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "bench")]
    name: String,
    #[arg(long)]
    listen: SocketAddr,
    /// `HOST:PORT` (`[IPv6]:PORT`, or a DNS name).
    #[arg(long, value_parser = parse_target)]
    target: HostPort,
    /// A source network allowed to connect (repeat for more).
    #[arg(long, required = true)]
    allow: Vec<ipnet::IpNet>,
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    #[arg(long)]
    source: Option<IpAddr>,
    #[arg(long)]
    interface: Option<String>,
}

fn parse_target(text: &str) -> Result<HostPort, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let port = port.parse().map_err(|e| format!("port of {text:?}: {e}"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let host = match bare.parse() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(host.to_string()),
    };
    Ok(HostPort { host, port })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = Relay {
        name: args.name,
        listen: args.listen,
        target: args.target,
        allow: args.allow,
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        placement: Placement {
            source: args.source,
            interface: args.interface,
        },
    };
    let counters = Arc::new(RelayCounters::default());
    let cancel = CancellationToken::new();
    let task = match relay::start(&config, counters.clone(), cancel.clone()).await {
        Ok(task) => task,
        Err(e) => {
            eprintln!("relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("relay: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    cancel.cancel();
    let _ = task.await;
    eprintln!("relay: stopped; counters: {counters:?}");
    ExitCode::SUCCESS
}
