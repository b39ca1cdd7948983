//! One function per subcommand.

pub mod demo;
mod passwd;
pub mod simulate;
mod spool;
mod wg;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{CheckConfigArgs, Cli, Command, RunArgs, TokenAction, TokenArgs};
use crate::tokens::TokenStore;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::CheckConfig(args) => Ok(check_config(args)),
        Command::Passwd(args) => passwd::run(args),
        Command::Token(args) => token(args),
        Command::Wg { action } => wg::run(action),
        Command::Spool(args) => spool::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => demo::run(args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("siteward")
        .build()
        .context("starting the async runtime")
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(&args.log)?;
    let config = match siteward_config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            // Every problem, each on its own line, as check-config prints them.
            eprintln!("siteward: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime()?.block_on(crate::supervisor::run(args.config, config))?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(args: CheckConfigArgs) -> ExitCode {
    match siteward_config::load(&args.file) {
        Ok(config) => {
            println!(
                "{}: OK ({} checks)",
                args.file.display(),
                config.checks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for problem in e.field_errors() {
                println!("{problem}");
            }
            eprintln!(
                "{}: {} error(s)",
                args.file.display(),
                e.field_errors().len()
            );
            ExitCode::FAILURE
        }
    }
}

fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let config = siteward_config::load(&args.config)
        .context("reading the configuration for its state_dir")?;
    crate::state_files::ensure_private_dir(&config.appliance.state_dir)?;
    let store = TokenStore::in_state_dir(&config.appliance.state_dir);
    match args.action {
        TokenAction::Create { name } => {
            let token = store.create(&name)?;
            eprintln!("Created token \"{name}\". It is shown once; store it now:");
            println!("{token}");
        }
        TokenAction::List => {
            for entry in store.list()? {
                let created =
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.created_at);
                println!(
                    "{}\t{}",
                    entry.name,
                    humantime::format_rfc3339_seconds(created)
                );
            }
        }
        TokenAction::Revoke { name } => {
            store.revoke(&name)?;
            eprintln!("Revoked token \"{name}\".");
        }
    }
    Ok(ExitCode::SUCCESS)
}
