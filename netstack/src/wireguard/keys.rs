//! Key generation, as `wg genkey` does it. Parsing, printing and public-key derivation
//! belong to the key types in `siteward_config` (`WgSecretKey`, `WgPublicKey`).

use rand::TryRngCore;
use siteward_config::WgSecretKey;

/// A new private key from the operating system's random source, clamped as Curve25519
/// requires (and as `wg genkey` prints it).
pub fn generate_private_key() -> std::io::Result<WgSecretKey> {
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(std::io::Error::other)?;
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
    Ok(WgSecretKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_clamped_and_distinct() {
        let a = generate_private_key().unwrap();
        let b = generate_private_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose()[0] & 7, 0);
        assert_eq!(a.expose()[31] & 0xc0, 0x40);
    }
}
