//! WireGuard keys: 32 bytes written as standard base64 with padding (what `wg genkey` and
//! `wg pubkey` print). Private and pre-shared keys never show their value.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Length of a key in base64: 32 bytes make 43 characters and one `=`.
const KEY_BASE64_LEN: usize = 44;

/// Why a text is not a WireGuard key. The message never quotes the text: it may be a
/// private key with a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WgKeyError {
    #[error("is not a WireGuard key: it must be 44 characters of base64 (32 bytes), as `wg genkey` prints, found {0} characters")]
    Length(usize),
    #[error(
        "is not a WireGuard key: it is not valid base64 (letters, digits, '+', '/', ending in '=')"
    )]
    Base64,
}

fn decode(text: &str) -> Result<[u8; 32], WgKeyError> {
    // Checked first so that a huge value is not decoded at all.
    let chars = text.chars().count();
    if chars != KEY_BASE64_LEN {
        return Err(WgKeyError::Length(chars));
    }
    // 44 characters decode to 31-33 bytes; only 32 (43 digits and one '=') make a key.
    let mut buffer = [0u8; 33];
    match STANDARD.decode_slice(text, &mut buffer) {
        Ok(32) => {
            let mut key = [0u8; 32];
            key.copy_from_slice(&buffer[..32]);
            Ok(key)
        }
        _ => Err(WgKeyError::Base64),
    }
}

/// A peer's 32-byte WireGuard public key. `Display`, `Debug` and `FromStr` use base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WgPublicKey(pub [u8; 32]);

impl FromStr for WgPublicKey {
    type Err = WgKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode(text).map(WgPublicKey)
    }
}

impl fmt::Display for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgPublicKey({self})")
    }
}

/// A 32-byte private or pre-shared key. `Debug` prints `WgSecretKey(***)`; there is no
/// `Display`, so the value cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct WgSecretKey([u8; 32]);

impl WgSecretKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        WgSecretKey(bytes)
    }

    /// The key itself, for the one place that must use it (the WireGuard handshake).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key of this key used as a private key (X25519, as `wg pubkey` computes).
    pub fn public_key(&self) -> WgPublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        WgPublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl FromStr for WgSecretKey {
    type Err = WgKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        decode(text).map(WgSecretKey)
    }
}

impl fmt::Debug for WgSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WgSecretKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key pair, the public half checked with `wg pubkey`.
    const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PUBLIC: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    #[test]
    fn public_key_round_trips_through_base64() {
        let key: WgPublicKey = PUBLIC.parse().unwrap();
        assert_eq!(key.to_string(), PUBLIC);
        assert_eq!(format!("{key:?}"), format!("WgPublicKey({PUBLIC})"));
    }

    #[test]
    fn secret_key_hides_its_value_and_derives_the_public_key() {
        let key: WgSecretKey = PRIVATE.parse().unwrap();
        assert_eq!(format!("{key:?}"), "WgSecretKey(***)");
        assert_eq!(key.public_key().to_string(), PUBLIC);
        assert_eq!(WgSecretKey::new(*key.expose()), key);
    }

    #[test]
    fn public_key_matches_rfc7748_test_vector() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let hex = |s: &str| -> [u8; 32] {
            let bytes: Vec<u8> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect();
            bytes.try_into().unwrap()
        };
        let private = WgSecretKey::new(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            private.public_key().0,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    #[test]
    fn malformed_keys_are_refused_without_quoting_them() {
        let no_padding = &PRIVATE[..43];
        let two_paddings = format!("{}==", &PRIVATE[..42]);
        let bad_char = format!("{}!=", &PRIVATE[..42]);
        let url_safe = PRIVATE.replace('+', "-");
        // The last digit carries 2 unused bits; standard base64 wants them zero.
        let trailing_bits = format!("{}n=", &PRIVATE[..42]);
        for (text, expected) in [
            ("", WgKeyError::Length(0)),
            (no_padding, WgKeyError::Length(43)),
            ("é".repeat(44).as_str(), WgKeyError::Base64),
            (two_paddings.as_str(), WgKeyError::Base64),
            (bad_char.as_str(), WgKeyError::Base64),
            (url_safe.as_str(), WgKeyError::Base64),
            (trailing_bits.as_str(), WgKeyError::Base64),
        ] {
            let err = text.parse::<WgSecretKey>().unwrap_err();
            assert_eq!(err, expected, "{text:?}");
            assert!(!err.to_string().contains(&PRIVATE[..8]), "{err}");
            assert_eq!(text.parse::<WgPublicKey>().unwrap_err(), expected);
        }
    }
}
