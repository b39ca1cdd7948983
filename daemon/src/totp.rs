//! Time-based one-time passwords (RFC 6238 with RFC 4226's HOTP): HMAC-SHA1, 30-second
//! steps, 6 digits, as every authenticator app speaks by default.

use ring::hmac;
use subtle::ConstantTimeEq;

const STEP_SECONDS: u64 = 30;
const DIGITS: u32 = 6;
/// Codes of the previous and the next step are accepted too: phone clocks drift.
const SKEW_STEPS: u64 = 1;
/// 160 bits, RFC 4226's recommended secret length.
pub const SECRET_BYTES: usize = 20;

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    let mut secret = [0u8; SECRET_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    secret
}

/// The code for `unix_seconds`, as the app shows it ("012345").
pub fn code_at(secret: &[u8], unix_seconds: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, unix_seconds / STEP_SECONDS),
        width = DIGITS as usize
    )
}

/// The time step whose code `code` is, if it is the code of `unix_seconds`' step or a
/// neighbouring one. The caller accepts a step once (RFC 6238 §5.2: a code must not work
/// twice), so it keeps the newest step it accepted.
pub fn matching_step(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let step = unix_seconds / STEP_SECONDS;
    let mut matched = None;
    for candidate in step.saturating_sub(SKEW_STEPS)..=step + SKEW_STEPS {
        let expected = code_at(secret, candidate * STEP_SECONDS);
        // Every candidate is compared, so the time taken does not say which matched.
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(candidate);
        }
    }
    matched
}

/// The `otpauth://` URI an authenticator app imports (usually from a QR code).
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let label = format!("{issuer}:{account}");
    format!(
        "otpauth://totp/{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        crate::ui::urlencode(&label),
        base32_encode(secret),
        crate::ui::urlencode(issuer),
    )
}

fn hotp(secret: &[u8], counter: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let digest = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.3); a SHA-1 digest has 20 bytes, so the offset
    // (at most 15) and the four bytes after it are always inside it.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(DIGITS)
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes what [`base32_encode`] writes (case-insensitive; spaces and padding ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = BASE32
            .iter()
            .position(|&b| char::from(b) == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the last 6 of its 8 digits).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, time), code, "at {time}");
            assert_eq!(matching_step(secret, code, time), Some(time / 30));
        }
    }

    #[test]
    fn neighbouring_steps_pass_and_others_do_not() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let step = now / 30;
        assert_eq!(
            matching_step(&secret, &code_at(&secret, now), now),
            Some(step)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, now - 30), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, now + 30), now),
            Some(step + 1)
        );
        // Two steps away is too far, unless it happens to be the same six digits.
        let far = code_at(&secret, now - 90);
        let near = [now - 30, now, now + 30].map(|t| code_at(&secret, t));
        assert!(near.contains(&far) || matching_step(&secret, &far, now).is_none());
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
        assert_eq!(matching_step(&secret, "", now), None);
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw 6ytb oi======").unwrap(), b"foobar");
        assert_eq!(base32_decode("M1"), None);
        let secret = new_secret();
        assert_eq!(base32_decode(&base32_encode(&secret)).unwrap(), secret);
    }
}
