//! `[uplink]` and `[spool]`: where accepted events go, and how much of them the box keeps
//! while the platform is away.

use std::path::Path;
use std::time::Duration;

use crate::model::{CertAndKey, SpoolSettings, Uplink};
use crate::raw::{RawSpool, RawUplink};
use crate::validate::{duration, existing_file, secret, Errors};

const DEFAULT_BATCH_MAX_EVENTS: i64 = 500;
const MAX_BATCH_EVENTS: i64 = 10_000;
const DEFAULT_BATCH_MAX_BYTES: i64 = 1 << 20;
const BATCH_BYTES_RANGE: (i64, i64) = (1 << 10, 16 << 20);
const DEFAULT_BATCH_MAX_WAIT: &str = "1s";
const MAX_BATCH_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: &str = "30s";
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));
const DEFAULT_STATUS_INTERVAL: &str = "60s";
const MIN_STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// 1 GiB: days of PBX and webhook events, and a small part of an appliance's disk.
const DEFAULT_SPOOL_MAX_BYTES: i64 = 1 << 30;
const MIN_SPOOL_MAX_BYTES: i64 = 1 << 20;

pub(crate) fn uplink(raw: RawUplink, base_dir: &Path, errors: &mut Errors) -> Option<Uplink> {
    let url = match raw.url.as_deref() {
        None => {
            errors.push(
                "uplink.url",
                "missing: the platform's endpoint, https://host/path",
            );
            None
        }
        Some(url) => https_url(url)
            .map_err(|why| errors.push("uplink.url", why))
            .ok(),
    };
    let token = secret(
        raw.token.as_deref(),
        raw.token_file.as_deref(),
        base_dir,
        "uplink.token",
        errors,
    );
    let client_cert = match (&raw.client_cert_file, &raw.client_key_file) {
        (None, None) => Some(None),
        (Some(cert), Some(key)) => {
            let cert_file = existing_file(base_dir, cert, "uplink.client_cert_file", errors);
            let key_file = existing_file(base_dir, key, "uplink.client_key_file", errors);
            match (cert_file, key_file) {
                (Some(cert_file), Some(key_file)) => Some(Some(CertAndKey {
                    cert_file,
                    key_file,
                })),
                _ => None,
            }
        }
        (Some(_), None) => {
            errors.push(
                "uplink.client_key_file",
                "missing: client_cert_file and client_key_file go together",
            );
            None
        }
        (None, Some(_)) => {
            errors.push(
                "uplink.client_cert_file",
                "missing: client_cert_file and client_key_file go together",
            );
            None
        }
    };
    if let (Some(None), Some(None)) = (&token, &client_cert) {
        errors.push(
            "uplink",
            "no credentials: set token (or token_file), client_cert_file and client_key_file, \
             or both",
        );
        return None;
    }
    let ca_file = match &raw.ca_file {
        None => Some(None),
        Some(file) => existing_file(base_dir, file, "uplink.ca_file", errors).map(Some),
    };
    let batch_max_events = integer(
        raw.batch_max_events.unwrap_or(DEFAULT_BATCH_MAX_EVENTS),
        (1, MAX_BATCH_EVENTS),
        "uplink.batch_max_events",
        errors,
    );
    let batch_max_bytes = integer(
        raw.batch_max_bytes.unwrap_or(DEFAULT_BATCH_MAX_BYTES),
        BATCH_BYTES_RANGE,
        "uplink.batch_max_bytes",
        errors,
    );
    let batch_max_wait = bounded_duration(
        raw.batch_max_wait
            .as_deref()
            .unwrap_or(DEFAULT_BATCH_MAX_WAIT),
        (Duration::ZERO, MAX_BATCH_WAIT),
        "uplink.batch_max_wait",
        errors,
    );
    let timeout = bounded_duration(
        raw.timeout.as_deref().unwrap_or(DEFAULT_TIMEOUT),
        TIMEOUT_RANGE,
        "uplink.timeout",
        errors,
    );
    let status_interval = match raw
        .status_interval
        .as_deref()
        .unwrap_or(DEFAULT_STATUS_INTERVAL)
    {
        "0s" | "0" => Some(None),
        text => bounded_duration(
            text,
            (MIN_STATUS_INTERVAL, Duration::from_secs(24 * 3600)),
            "uplink.status_interval",
            errors,
        )
        .map(Some),
    };
    Some(Uplink {
        url: url?,
        token: token?,
        client_cert: client_cert?,
        ca_file: ca_file?,
        batch_max_events: usize::try_from(batch_max_events?).ok()?,
        batch_max_bytes: usize::try_from(batch_max_bytes?).ok()?,
        batch_max_wait: batch_max_wait?,
        timeout: timeout?,
        status_interval: status_interval?,
    })
}

pub(crate) fn spool(raw: RawSpool, errors: &mut Errors) -> Option<SpoolSettings> {
    let max_bytes = integer(
        raw.max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES),
        (MIN_SPOOL_MAX_BYTES, i64::MAX),
        "spool.max_bytes",
        errors,
    )?;
    Some(SpoolSettings {
        max_bytes: u64::try_from(max_bytes).ok()?,
    })
}

/// `https://host[:port][/path]`: the uplink carries credentials, so never plain HTTP.
fn https_url(url: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!(
            "\"{url}\" is not an https:// URL (events and credentials never go in clear)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "\"{url}\" has no host, or has user info or spaces (write https://host[:port]/path)"
        ));
    }
    Ok(url.to_string())
}

pub(crate) fn integer(
    value: i64,
    (min, max): (i64, i64),
    path: &str,
    errors: &mut Errors,
) -> Option<i64> {
    if (min..=max).contains(&value) {
        Some(value)
    } else if max == i64::MAX {
        errors.push(path, format!("must be at least {min}, got {value}"));
        None
    } else {
        errors.push(path, format!("must be {min} to {max}, got {value}"));
        None
    }
}

pub(crate) fn bounded_duration(
    text: &str,
    (min, max): (Duration, Duration),
    path: &str,
    errors: &mut Errors,
) -> Option<Duration> {
    let value = duration(text, path, errors)?;
    if value < min || value > max {
        errors.push(
            path,
            format!(
                "must be {} to {}, got {text}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        );
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors() -> Errors {
        Errors(Vec::new())
    }

    fn raw(url: &str) -> RawUplink {
        RawUplink {
            url: Some(url.into()),
            token: Some("platform-token-0123456789".into()),
            ..RawUplink::default()
        }
    }

    #[test]
    fn defaults_fill_an_uplink_with_a_token() {
        let mut e = errors();
        let uplink = uplink(
            raw("https://ingest.example.net/v1/events"),
            Path::new("/"),
            &mut e,
        )
        .expect("valid");
        assert!(e.0.is_empty(), "{:?}", e.0);
        assert_eq!(uplink.batch_max_events, 500);
        assert_eq!(uplink.batch_max_bytes, 1 << 20);
        assert_eq!(uplink.batch_max_wait, Duration::from_secs(1));
        assert_eq!(uplink.timeout, Duration::from_secs(30));
        assert_eq!(uplink.status_interval, Some(Duration::from_secs(60)));
        assert_eq!(uplink.token.unwrap().expose(), "platform-token-0123456789");
    }

    #[test]
    fn plain_http_and_credential_free_uplinks_are_refused() {
        let mut e = errors();
        assert!(uplink(raw("http://ingest.example.net/"), Path::new("/"), &mut e).is_none());
        assert_eq!(e.0[0].path, "uplink.url");
        assert!(e.0[0].message.contains("https://"), "{}", e.0[0].message);

        let mut e = errors();
        let mut no_credentials = raw("https://ingest.example.net/");
        no_credentials.token = None;
        assert!(uplink(no_credentials, Path::new("/"), &mut e).is_none());
        assert_eq!(e.0[0].path, "uplink");

        let mut e = errors();
        let mut half = raw("https://ingest.example.net/");
        half.client_cert_file = Some("box.pem".into());
        assert!(uplink(half, Path::new("/"), &mut e).is_none());
        assert_eq!(e.0[0].path, "uplink.client_key_file");
    }

    #[test]
    fn out_of_range_numbers_and_durations_name_their_field() {
        let mut e = errors();
        let mut bad = raw("https://ingest.example.net/");
        bad.batch_max_events = Some(0);
        bad.batch_max_bytes = Some(1 << 40);
        bad.batch_max_wait = Some("5m".into());
        bad.timeout = Some("fast".into());
        assert!(uplink(bad, Path::new("/"), &mut e).is_none());
        let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "uplink.batch_max_events",
                "uplink.batch_max_bytes",
                "uplink.batch_max_wait",
                "uplink.timeout"
            ]
        );
    }

    #[test]
    fn status_reports_can_be_turned_off_and_the_spool_has_a_floor() {
        let mut e = errors();
        let mut off = raw("https://ingest.example.net/");
        off.status_interval = Some("0s".into());
        assert_eq!(
            uplink(off, Path::new("/"), &mut e).unwrap().status_interval,
            None
        );
        assert_eq!(
            spool(RawSpool::default(), &mut e).unwrap().max_bytes,
            1 << 30
        );
        assert!(spool(
            RawSpool {
                max_bytes: Some(1000)
            },
            &mut e
        )
        .is_none());
        assert_eq!(e.0.last().unwrap().path, "spool.max_bytes");
    }
}
