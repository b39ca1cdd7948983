//! `siteward`: the edge appliance daemon. This file only parses the command line and
//! prints errors; each subcommand lives in its own module.
#![forbid(unsafe_code)]

mod accounts;
mod admin;
mod apply;
mod cli;
mod commands;
mod config_ops;
mod config_store;
mod control;
mod diagnostics;
mod forwarding;
mod log_view;
mod logging;
mod metrics;
mod privileges;
mod sd_notify;
mod sessions;
mod state_files;
mod supervisor;
mod tokens;
mod totp;
mod ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::Run(args) = &cli.command {
        // Here, before the runtime starts its threads: they inherit these capabilities.
        if let Err(e) = privileges::confine(args.allow_root) {
            eprintln!("siteward: error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain: "starting the admin API: binding 0.0.0.0:8443: ...".
            eprintln!("siteward: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
