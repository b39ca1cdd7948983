//! `tls`: the port completes a TLS handshake with a certificate the configured trust
//! accepts for the server name. Reports the leaf certificate's notAfter, also when
//! verification fails (an expired certificate is the case that matters most).

use std::time::Duration;

use siteward_config::TlsProbe;
use tokio::io::AsyncWriteExt;

use super::tls_client;
use crate::net::ProbeEnv;
use crate::{Observation, ProbeResult};

/// At most this long is spent on a polite close_notify after a successful handshake.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

pub async fn probe(p: &TlsProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let name = tls_client::server_name(p.server_name.as_deref(), &p.target.host)?;
    let stream = env.connect_tcp(&p.target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut session = tls_client::handshake(stream, name, &p.trust).await?;
    let detail = format!("{} from {peer}", session.describe());
    let tls_not_after = session.not_after();
    // Closing with close_notify spares the server an "unexpected EOF" in its log; it must
    // not turn a passed check into a timeout, hence the bound.
    let grace = CLOSE_GRACE.min(env.remaining() / 2);
    let _ = tokio::time::timeout(grace, session.stream.shutdown()).await;
    Ok(Observation {
        detail,
        tls_not_after,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use siteward_config::{Check, Host, HostPort, Placement, Probe, TlsProbe, TlsTrust};

    use super::super::tls_client::test_support::{pki, serve};
    use crate::net::Resolver;
    use crate::probes::testing::closed_port;
    use crate::{Outcome, Reason};

    fn check(port: u16, server_name: Option<&str>, trust: TlsTrust) -> Check {
        Check {
            name: "tls-test".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::Tls(TlsProbe {
                target: HostPort {
                    host: Host::Ip("127.0.0.1".parse().unwrap()),
                    port,
                },
                server_name: server_name.map(str::to_string),
                trust,
            }),
        }
    }

    async fn run(check: &Check) -> Outcome {
        let resolver = Resolver::from_system().unwrap();
        crate::probes::run(check, &resolver).await
    }

    #[tokio::test]
    async fn ca_file_trust_is_up_and_reports_expiry() {
        let pki = pki(&["localhost"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let trust = TlsTrust::CaFile(pki.ca_file.path().to_path_buf());
        let outcome = run(&check(addr.port(), Some("localhost"), trust)).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
        assert!(outcome.detail.contains("TLS 1.3"), "{}", outcome.detail);
        assert!(
            outcome.detail.contains("CN=localhost"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.contains("expires in"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn ip_target_without_server_name_verifies_the_ip() {
        let pki = pki(&["127.0.0.1"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let trust = TlsTrust::CaFile(pki.ca_file.path().to_path_buf());
        let outcome = run(&check(addr.port(), None, trust)).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn system_roots_reject_a_private_ca() {
        let pki = pki(&["localhost"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let outcome = run(&check(
            addr.port(),
            Some("localhost"),
            TlsTrust::SystemRoots,
        ))
        .await;
        assert_eq!(outcome.reason, Reason::TlsError, "{}", outcome.detail);
        // The certificate was presented, so its expiry is known all the same.
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
    }

    #[tokio::test]
    async fn insecure_skip_verify_accepts_any_certificate() {
        let pki = pki(&["some.other.name"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let outcome = run(&check(
            addr.port(),
            Some("localhost"),
            TlsTrust::InsecureSkipVerify,
        ))
        .await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
    }

    #[tokio::test]
    async fn wrong_server_name_is_tls_error() {
        let pki = pki(&["localhost"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let trust = TlsTrust::CaFile(pki.ca_file.path().to_path_buf());
        let outcome = run(&check(addr.port(), Some("db.example.com"), trust)).await;
        assert_eq!(outcome.reason, Reason::TlsError, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("not valid for db.example.com"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn expired_certificate_is_tls_error_with_expiry() {
        let pki = pki(&["localhost"], (2020, 1, 1));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let trust = TlsTrust::CaFile(pki.ca_file.path().to_path_buf());
        let outcome = run(&check(addr.port(), Some("localhost"), trust)).await;
        assert_eq!(outcome.reason, Reason::TlsError, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("certificate expired at"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.contains("2020"), "{}", outcome.detail);
        assert_eq!(outcome.tls_not_after, Some(pki.not_after));
        assert_eq!(pki.not_after, 1_577_836_800);
    }

    #[tokio::test]
    async fn plaintext_server_is_tls_error() {
        // Speaks first, like SSH, and closes: never a ServerHello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
        });
        let outcome = run(&check(
            addr.port(),
            Some("localhost"),
            TlsTrust::InsecureSkipVerify,
        ))
        .await;
        assert_eq!(outcome.reason, Reason::TlsError, "{}", outcome.detail);
        assert_eq!(outcome.tls_not_after, None);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = closed_port().await;
        let outcome = run(&check(port, None, TlsTrust::InsecureSkipVerify)).await;
        assert_eq!(outcome.reason, Reason::Refused, "{}", outcome.detail);
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = check(port, None, TlsTrust::InsecureSkipVerify);
        c.timeout = Duration::from_millis(300);
        let outcome = run(&c).await;
        assert_eq!(outcome.reason, Reason::Timeout, "{}", outcome.detail);
        drop(listener);
    }

    #[tokio::test]
    async fn missing_ca_file_is_tls_error() {
        let pki = pki(&["localhost"], (2080, 6, 30));
        let (addr, _) = serve(Some(pki.server.clone()), Vec::new()).await;
        let trust = TlsTrust::CaFile("/nonexistent/siteward-ca.pem".into());
        let outcome = run(&check(addr.port(), Some("localhost"), trust)).await;
        assert_eq!(outcome.reason, Reason::TlsError, "{}", outcome.detail);
        assert!(outcome.detail.contains("CA file"), "{}", outcome.detail);
    }

    #[test]
    fn expiry_text_reads_naturally() {
        use super::super::tls_client::expiry_text;
        let now = 1_700_000_000;
        assert_eq!(
            expiry_text(now + 42 * 86_400 + 5, now),
            "expires in 42 days"
        );
        assert_eq!(expiry_text(now + 86_400, now), "expires in 1 day");
        assert_eq!(expiry_text(now + 60, now), "expires today");
        assert_eq!(expiry_text(now - 3 * 86_400, now), "expired 3 days ago");
    }
}
