//! `siteward wg genkey | pubkey`: WireGuard keys, in the format `wg` uses (base64).

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use siteward_netstack::wireguard::keys;

use crate::cli::WgAction;

/// Longest input `pubkey` reads: a key is 44 characters and a newline.
const MAX_KEY_INPUT: u64 = 1024;

pub fn run(action: WgAction) -> anyhow::Result<ExitCode> {
    match action {
        WgAction::Genkey => {
            let key = keys::generate_private_key().context("generating a private key")?;
            println!("{}", STANDARD.encode(key));
        }
        WgAction::Pubkey => {
            let mut input = String::new();
            std::io::stdin()
                .take(MAX_KEY_INPUT)
                .read_to_string(&mut input)
                .context("reading a private key from standard input")?;
            // The message must not echo the input: it is a private key.
            let private: [u8; 32] = STANDARD
                .decode(input.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .context("standard input is not a WireGuard private key (base64 of 32 bytes)")?;
            println!("{}", STANDARD.encode(keys::public_key(&private)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
