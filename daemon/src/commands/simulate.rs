//! `siteward simulate <kind> --listen ADDR`: the protocol simulators as a command.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub kind: SimulatorKind,
}

#[derive(Debug, Subcommand)]
pub enum SimulatorKind {}

#[allow(dead_code)]
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on, e.g. 127.0.0.1:1521.
    #[arg(long)]
    pub listen: SocketAddr,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    match args.kind {}
}
