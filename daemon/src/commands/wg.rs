//! `siteward wg genkey | pubkey`: WireGuard keys, in the format `wg` uses (base64).

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use siteward_config::WgSecretKey;
use siteward_netstack::wireguard::keys;

use crate::cli::WgAction;

/// Longest input `pubkey` reads: a key is 44 characters and a newline.
const MAX_KEY_INPUT: u64 = 1024;

pub fn run(action: WgAction) -> anyhow::Result<ExitCode> {
    match action {
        WgAction::Genkey => {
            let key = keys::generate_private_key().context("generating a private key")?;
            println!("{}", STANDARD.encode(key.expose()));
        }
        WgAction::Pubkey => {
            let mut input = String::new();
            std::io::stdin()
                .take(MAX_KEY_INPUT)
                .read_to_string(&mut input)
                .context("reading a private key from standard input")?;
            // The key's parse error never echoes the input: it is a private key.
            let private: WgSecretKey = input
                .trim()
                .parse()
                .context("standard input is not a WireGuard private key")?;
            println!("{}", private.public_key());
        }
    }
    Ok(ExitCode::SUCCESS)
}
