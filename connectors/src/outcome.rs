//! What a probe reports.

use std::io;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Why a check ended as it did: a small fixed set, so it can be a metric label.
/// The free-form specifics go in the detail text, which is for people and the API only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The check passed.
    Ok,
    /// The peer answered the connection attempt with a reset.
    Refused,
    /// No answer within the check's timeout.
    Timeout,
    /// No route, host or network unreachable.
    Unreachable,
    /// The target's name did not resolve.
    ResolveFailed,
    /// The source address or interface could not be bound.
    BindError,
    /// TLS handshake or certificate verification failed.
    TlsError,
    /// The peer answered with something that is not the protocol, or the wrong content.
    BadResponse,
    /// A well-formed answer with a status that does not count as up (HTTP, SIP, DNS rcode).
    BadStatus,
    /// The peer rejected the credentials.
    AuthFailed,
    /// An Oracle TNS listener refused (with its ERR code in the detail).
    TnsRefused,
    /// The port is open but the peer stays silent (e.g. "open, no NI answer").
    NoAnswer,
    /// A SAProuter refused the route (its NI_RTERR code in the detail).
    RouteError,
    /// Too many ICMP echo requests went unanswered.
    PacketLoss,
    /// Any other local I/O error.
    IoError,
}

impl Reason {
    /// Every reason, in a stable order (used to index counters).
    pub const ALL: [Reason; 15] = [
        Reason::Ok,
        Reason::Refused,
        Reason::Timeout,
        Reason::Unreachable,
        Reason::ResolveFailed,
        Reason::BindError,
        Reason::TlsError,
        Reason::BadResponse,
        Reason::BadStatus,
        Reason::AuthFailed,
        Reason::TnsRefused,
        Reason::NoAnswer,
        Reason::RouteError,
        Reason::PacketLoss,
        Reason::IoError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::Unreachable => "unreachable",
            Reason::ResolveFailed => "resolve_failed",
            Reason::BindError => "bind_error",
            Reason::TlsError => "tls_error",
            Reason::BadResponse => "bad_response",
            Reason::BadStatus => "bad_status",
            Reason::AuthFailed => "auth_failed",
            Reason::TnsRefused => "tns_refused",
            Reason::NoAnswer => "no_answer",
            Reason::RouteError => "route_error",
            Reason::PacketLoss => "packet_loss",
            Reason::IoError => "io_error",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A successful probe: what it saw, for the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub detail: String,
    /// The peer certificate's notAfter (Unix seconds), for checks that speak TLS.
    pub tls_not_after: Option<i64>,
}

impl Observation {
    pub fn new(detail: impl Into<String>) -> Self {
        Observation {
            detail: detail.into(),
            tls_not_after: None,
        }
    }
}

/// A failed probe: the reason (metric label) and what happened (for people).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
    /// Known even when the check failed after the handshake (e.g. HTTP 500 over TLS).
    pub tls_not_after: Option<i64>,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Failure {
            reason,
            detail: detail.into(),
            tls_not_after: None,
        }
    }

    /// Prefixes the detail with what was being done, e.g. `"login: "`.
    pub fn context(mut self, doing: &str) -> Self {
        self.detail = format!("{doing}: {}", self.detail);
        self
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        let reason = match e.kind() {
            io::ErrorKind::ConnectionRefused => Reason::Refused,
            io::ErrorKind::TimedOut => Reason::Timeout,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                Reason::Unreachable
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => Reason::BadResponse,
            _ => match e.raw_os_error() {
                Some(libc_code) if libc_code == EHOSTUNREACH || libc_code == ENETUNREACH => {
                    Reason::Unreachable
                }
                _ => Reason::IoError,
            },
        };
        Failure::new(reason, e.to_string())
    }
}

// Linux errno values, so the mapping does not depend on io::ErrorKind stabilisation details.
const ENETUNREACH: i32 = 101;
const EHOSTUNREACH: i32 = 113;

pub type ProbeResult = Result<Observation, Failure>;

/// One finished run of a check, as the engine records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub reason: Reason,
    pub detail: String,
    pub duration: Duration,
    pub at: SystemTime,
    pub tls_not_after: Option<i64>,
}

impl Outcome {
    pub fn up(&self) -> bool {
        self.reason == Reason::Ok
    }

    pub fn from_result(result: ProbeResult, duration: Duration, at: SystemTime) -> Self {
        match result {
            Ok(o) => Outcome {
                reason: Reason::Ok,
                detail: o.detail,
                duration,
                at,
                tls_not_after: o.tls_not_after,
            },
            Err(f) => Outcome {
                reason: f.reason,
                detail: f.detail,
                duration,
                at,
                tls_not_after: f.tls_not_after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_index_matches_all() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn io_errors_map_to_reasons() {
        let refused: Failure = io::Error::from(io::ErrorKind::ConnectionRefused).into();
        assert_eq!(refused.reason, Reason::Refused);
        let unreachable: Failure = io::Error::from_raw_os_error(EHOSTUNREACH).into();
        assert_eq!(unreachable.reason, Reason::Unreachable);
        let eof: Failure = io::Error::from(io::ErrorKind::UnexpectedEof).into();
        assert_eq!(eof.reason, Reason::BadResponse);
    }
}
