//! `siteward passwd USER`: sets a web UI password from the shell (and turns two-factor
//! login off), the way back in when it is forgotten (root on the box only: the accounts
//! live in the private state directory).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::accounts::AccountStore;
use crate::cli::PasswdArgs;

pub fn run(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let config = siteward_config::load(&args.config)
        .context("reading the configuration for its state_dir")?;
    crate::state_files::ensure_private_dir(&config.appliance.state_dir)?;
    let store = AccountStore::in_state_dir(&config.appliance.state_dir);
    let password = if std::io::stdin().is_terminal() {
        let first = prompt_hidden(&format!("New password for {}: ", args.user))?;
        let second = prompt_hidden("Again: ")?;
        if first != second {
            bail!("the two passwords differ; nothing changed");
        }
        first
    } else {
        read_line()?
    };
    store.set_password(&args.user, &password)?;
    // This is the way back in for someone locked out, which includes a lost phone.
    let had_two_factor = store
        .account(&args.user)?
        .is_some_and(|a| a.totp_secret.is_some());
    if had_two_factor {
        store.disable_totp(&args.user)?;
        eprintln!(
            "Password of \"{}\" set; two-factor login turned off (turn it on again on the Account page).",
            args.user
        );
    } else {
        eprintln!("Password of \"{}\" set.", args.user);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of standard input, without its line end.
fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a line from the terminal with echo turned off (and back on, whatever happens).
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
    let line = read_line();
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    restored.context("turning echo back on")?;
    line
}
