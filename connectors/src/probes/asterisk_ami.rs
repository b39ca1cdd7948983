//! `asterisk-ami`: a full manager session — banner, Login, Ping, Logoff.
//!
//! Up means the banner arrived, the credentials were accepted and Ping answered Pong.
//! Responses are matched by the ActionID we chose, so unsolicited events interleaved by
//! the server (even with `Events: off`, some arrive) are skipped, within a byte bound.
//!
//! Reasons: a peer that accepts but never sends a banner before the deadline is
//! `no_answer` ("open, no AMI banner"), as for SAP NI; one that greets but then does not
//! answer an action is `timeout`. Anything that is not AMI, or a connection closed early,
//! is `bad_response`; `Response: Error` to Login is `auth_failed` with the server's Message.
//!
//! `login` and `Session` are shared with the `asterisk-ami` event source, which keeps
//! the events read while waiting for a response instead of skipping them.

use std::collections::VecDeque;

use bytes::BufMut;
use siteward_config::{AsteriskAmiProbe, HostPort, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Duration, Instant};

use crate::net::ProbeEnv;
use crate::protocol::ami::{decode_banner, decode_message, Kind, Message, MAX_BANNER, MAX_MESSAGE};
use crate::protocol::DecodeError;
use crate::{Failure, Observation, ProbeResult, Reason};

/// Bytes of unrelated messages (events, stray responses) we read while waiting for one
/// response before giving up on the peer: generous for a busy PBX, bounded for a hostile one.
const MAX_SKIPPED_BYTES: usize = 1024 * 1024;

/// How long Logoff may take to be acknowledged. The check has passed by then; this only
/// lets the server close the session tidily instead of seeing a reset.
pub(crate) const LOGOFF_GRACE: Duration = Duration::from_millis(250);

pub async fn probe(p: &AsteriskAmiProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let (mut session, banner) = login(&p.target, &p.username, &p.secret, false, env).await?;

    let response = session
        .call(Message::action("Ping"), "Ping", env.deadline)
        .await?;
    let pong = match response.kind() {
        Kind::Response(r) if r.eq_ignore_ascii_case("Success") => response
            .get("Ping")
            .is_some_and(|v| v.eq_ignore_ascii_case("Pong")),
        // Asterisk before 1.8 answered `Response: Pong`.
        Kind::Response(r) => r.eq_ignore_ascii_case("Pong"),
        _ => false,
    };
    if !pong {
        return Err(unexpected(&session.peer, "Ping", &response));
    }

    // The check has passed; a missing Goodbye is the server's business, not a failure.
    session
        .logoff(env.deadline.min(Instant::now() + LOGOFF_GRACE))
        .await;

    let events = match session.skipped_events {
        0 => String::new(),
        1 => ", 1 event skipped".to_string(),
        n => format!(", {n} events skipped"),
    };
    Ok(Observation::new(format!(
        "{banner} at {}: logged in as {:?}, Ping answered Pong{events}",
        session.peer, p.username
    )))
}

/// Connects to `target` through `env` (resolution, placement, deadline), reads the banner
/// and logs in as `username` with `Events: on` or `off`; returns the session and the
/// banner. The probe and the `asterisk-ami` event source both start here.
pub(crate) async fn login(
    target: &HostPort,
    username: &str,
    secret: &Secret,
    events: bool,
    env: &ProbeEnv<'_>,
) -> Result<(Session, String), Failure> {
    let stream = env.connect_tcp(target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| target.to_string());
    let mut session = Session {
        stream,
        buf: Vec::new(),
        peer,
        id_prefix: format!("siteward-{:08x}", rand::random::<u32>()),
        next_id: 1,
        skipped_events: 0,
        held: events.then(VecDeque::new),
    };

    let banner = match timeout_at(env.deadline, session.read_banner()).await {
        Ok(banner) => banner?,
        Err(_) => {
            return Err(Failure::new(
                Reason::NoAnswer,
                format!(
                    "{} accepted the connection but sent no AMI banner",
                    session.peer
                ),
            ))
        }
    };

    let login = Message::action("Login")
        .with("Username", username)
        .with("Secret", secret.expose())
        .with("Events", if events { "on" } else { "off" });
    let response = session.call(login, "Login", env.deadline).await?;
    match response.kind() {
        Kind::Response(r) if r.eq_ignore_ascii_case("Success") => Ok((session, banner)),
        Kind::Response(r) if r.eq_ignore_ascii_case("Error") => {
            let message = response.get("Message").unwrap_or("no message");
            Err(Failure::new(
                Reason::AuthFailed,
                format!("{} refused login as {username:?}: {message}", session.peer),
            ))
        }
        _ => Err(unexpected(&session.peer, "Login", &response)),
    }
}

/// A failure for a response that is neither the expected success nor a plain error.
pub(crate) fn unexpected(peer: &str, action: &str, response: &Message) -> Failure {
    let what = match response.kind() {
        Kind::Response(r) => format!("Response: {r}"),
        _ => "a message without Response".to_string(),
    };
    let message = response
        .get("Message")
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    Failure::new(
        Reason::BadResponse,
        format!("{peer} answered {action} with {what}{message}"),
    )
}

/// One manager connection: a read buffer and the ActionIDs we hand out.
pub(crate) struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    peer: String,
    id_prefix: String,
    next_id: u32,
    skipped_events: usize,
    /// With events on, the events read while waiting for a response, kept in order for
    /// the caller; with events off they are only counted.
    held: Option<VecDeque<Message>>,
}

impl Session {
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    async fn read_banner(&mut self) -> Result<String, Failure> {
        loop {
            match decode_banner(&self.buf) {
                Ok(Some((banner, used))) => {
                    self.buf.drain(..used);
                    return Ok(banner.to_string());
                }
                Ok(None) => {}
                Err(e) => return Err(self.bad("reading the banner", e)),
            }
            self.fill(MAX_BANNER + 1)
                .await
                .map_err(|f| f.context(&format!("reading the AMI banner from {}", self.peer)))?;
        }
    }

    /// Sends `action` with a fresh ActionID and returns the response carrying that ID,
    /// skipping (or holding) everything else. Past `deadline` it is a `timeout`.
    pub(crate) async fn call(
        &mut self,
        action: Message,
        name: &str,
        deadline: Instant,
    ) -> Result<Message, Failure> {
        match timeout_at(deadline, self.exchange(action, name)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("{} sent no response to {name}", self.peer),
            )),
        }
    }

    /// Sends `action` with a fresh ActionID, which it returns.
    pub(crate) async fn send(&mut self, action: Message, name: &str) -> Result<String, Failure> {
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        self.next_id += 1;
        let wire = action
            .with("ActionID", id.as_str())
            .encode()
            .map_err(|e| Failure::new(Reason::IoError, format!("cannot send {name}: {e}")))?;
        self.stream
            .write_all(&wire)
            .await
            .map_err(|e| Failure::from(e).context(&format!("sending {name} to {}", self.peer)))?;
        Ok(id)
    }

    async fn exchange(&mut self, action: Message, name: &str) -> Result<Message, Failure> {
        let id = self.send(action, name).await?;
        let mut skipped_bytes = 0usize;
        loop {
            match decode_message(&self.buf) {
                Ok(Some((message, used))) => {
                    self.buf.drain(..used);
                    if matches!(message.kind(), Kind::Response(_))
                        && message.action_id() == Some(id.as_str())
                    {
                        return Ok(message);
                    }
                    skipped_bytes = skipped_bytes.saturating_add(used);
                    if skipped_bytes > MAX_SKIPPED_BYTES {
                        return Err(Failure::new(
                            Reason::BadResponse,
                            format!(
                                "{} sent over {MAX_SKIPPED_BYTES} bytes of other messages \
                                 without a response to {name}",
                                self.peer
                            ),
                        ));
                    }
                    if matches!(message.kind(), Kind::Event(_)) {
                        self.skipped_events += 1;
                        if let Some(held) = &mut self.held {
                            held.push_back(message);
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(self.bad(&format!("waiting for the {name} response"), e)),
            }
            self.fill(MAX_MESSAGE + 1)
                .await
                .map_err(|f| f.context(&format!("waiting for the {name} response")))?;
        }
    }

    /// The next event held while waiting for a response, oldest first.
    pub(crate) fn next_held(&mut self) -> Option<Message> {
        self.held.as_mut()?.pop_front()
    }

    /// The next complete message already read, if any.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, Failure> {
        match decode_message(&self.buf) {
            Ok(Some((message, used))) => {
                self.buf.drain(..used);
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.bad("reading a message", e)),
        }
    }

    /// Reads what the peer sent next, keeping at most one message's worth of bytes that do
    /// not yet form a message. Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn read_more(&mut self) -> Result<(), Failure> {
        self.fill(MAX_MESSAGE + 1).await
    }

    async fn fill(&mut self, limit: usize) -> Result<(), Failure> {
        let room = limit.saturating_sub(self.buf.len());
        if room == 0 {
            return Err(Failure::new(
                Reason::BadResponse,
                format!("answer larger than {limit} bytes without a complete message"),
            ));
        }
        let read = self
            .stream
            .read_buf(&mut (&mut self.buf).limit(room))
            .await?;
        if read == 0 {
            return Err(Failure::new(
                Reason::BadResponse,
                "connection closed before a complete answer",
            ));
        }
        Ok(())
    }

    /// Logs off, waiting for Goodbye until `deadline` at most; the answer does not matter.
    pub(crate) async fn logoff(&mut self, deadline: Instant) {
        let _ = self
            .call(Message::action("Logoff"), "Logoff", deadline)
            .await;
    }

    fn bad(&self, doing: &str, e: DecodeError) -> Failure {
        Failure::new(
            Reason::BadResponse,
            format!("{doing} from {}: {e}", self.peer),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Resolver;
    use crate::probes::testing::{closed_port, TestEnv};
    use crate::simulate::asterisk_ami::{serve, Mode, Options};
    use siteward_config::{Check, Host, HostPort, Placement, Probe, Secret};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    const SECRET: &str = "s3cr3t-value";

    fn options(mode: Mode) -> Options {
        Options {
            mode,
            username: "monitor".into(),
            secret: Some(Secret::new(SECRET)),
            secret_file: None,
            version: "7.0.3".into(),
            delay_ms: 0,
            events: false,
            event_interval_ms: 1000,
            interleaved_calls: true,
            read_only_user: false,
        }
    }

    struct Sim {
        port: u16,
        shutdown: CancellationToken,
    }

    impl Drop for Sim {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn start(options: Options) -> Sim {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, options, shutdown.clone()));
        Sim { port, shutdown }
    }

    fn ami(port: u16, secret: &str) -> AsteriskAmiProbe {
        AsteriskAmiProbe {
            target: HostPort {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port,
            },
            username: "monitor".into(),
            secret: Secret::new(secret),
        }
    }

    async fn run_probe(p: &AsteriskAmiProbe, timeout_ms: u64) -> ProbeResult {
        probe(p, &TestEnv::new(timeout_ms).env()).await
    }

    fn assert_no_secret(text: &str) {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains("wrong-secret"), "secret leaked: {text}");
    }

    #[tokio::test]
    async fn up_through_the_engine_with_version_in_detail() {
        let sim = start(options(Mode::Ok)).await;
        let check = Check {
            name: "pbx-ami".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::AsteriskAmi(ami(sim.port, SECRET)),
        };
        assert_no_secret(&format!("{check:?}"));
        let outcome = crate::probes::run(&check, &Resolver::from_system().unwrap()).await;
        assert_eq!(outcome.reason, Reason::Ok, "{}", outcome.detail);
        assert!(
            outcome.detail.contains("Asterisk Call Manager/7.0.3"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.contains("Pong"), "{}", outcome.detail);
        assert!(!outcome.detail.contains("skipped"), "{}", outcome.detail);
        assert_no_secret(&outcome.detail);
    }

    #[tokio::test]
    async fn wrong_secret_is_auth_failed_with_the_server_message() {
        let sim = start(options(Mode::Ok)).await;
        let failure = run_probe(&ami(sim.port, "wrong-secret"), 2000)
            .await
            .unwrap_err();
        assert_eq!(failure.reason, Reason::AuthFailed, "{}", failure.detail);
        assert!(
            failure.detail.contains("Authentication failed"),
            "{}",
            failure.detail
        );
        assert_no_secret(&failure.detail);
    }

    #[tokio::test]
    async fn interleaved_events_are_skipped_by_action_id() {
        let mut o = options(Mode::Ok);
        o.events = true;
        let sim = start(o).await;
        let obs = run_probe(&ami(sim.port, SECRET), 2000).await.unwrap();
        // The simulator sends FullyBooted after Login and a call's events before each
        // further response, so at least three events came before the Ping response.
        let skipped: usize = obs
            .detail
            .rsplit(", ")
            .next()
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(skipped >= 3, "{}", obs.detail);
    }

    #[tokio::test]
    async fn slow_server_within_the_timeout_is_up() {
        let mut o = options(Mode::Slow);
        o.delay_ms = 50;
        let sim = start(o).await;
        let obs = run_probe(&ami(sim.port, SECRET), 2000).await.unwrap();
        assert!(obs.detail.contains("logged in"), "{}", obs.detail);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = closed_port().await;
        let failure = run_probe(&ami(port, SECRET), 1000).await.unwrap_err();
        assert_eq!(failure.reason, Reason::Refused, "{}", failure.detail);
    }

    #[tokio::test]
    async fn silent_peer_is_no_answer() {
        let sim = start(options(Mode::Silent)).await;
        let failure = run_probe(&ami(sim.port, SECRET), 300).await.unwrap_err();
        assert_eq!(failure.reason, Reason::NoAnswer, "{}", failure.detail);
        assert!(
            failure.detail.contains("no AMI banner"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn silent_peer_through_the_engine_is_not_up() {
        let sim = start(options(Mode::Silent)).await;
        let check = Check {
            name: "pbx-ami".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_millis(300),
            rise: 1,
            fall: 1,
            placement: Placement::default(),
            probe: Probe::AsteriskAmi(ami(sim.port, SECRET)),
        };
        let outcome = crate::probes::run(&check, &Resolver::from_system().unwrap()).await;
        assert!(
            matches!(outcome.reason, Reason::NoAnswer | Reason::Timeout),
            "{:?}: {}",
            outcome.reason,
            outcome.detail
        );
        assert!(outcome.duration < Duration::from_millis(900));
    }

    #[tokio::test]
    async fn garbage_is_bad_response() {
        let sim = start(options(Mode::Garbage)).await;
        let failure = run_probe(&ami(sim.port, SECRET), 1000).await.unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse, "{}", failure.detail);
        assert!(
            failure.detail.contains("not an AMI banner"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn closing_without_banner_is_bad_response() {
        let sim = start(options(Mode::NoBanner)).await;
        let failure = run_probe(&ami(sim.port, SECRET), 1000).await.unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse, "{}", failure.detail);
        assert!(failure.detail.contains("banner"), "{}", failure.detail);
    }

    /// A one-connection fake server: sends the banner, then one of `answers` per request,
    /// with the request's ActionID in place of `{id}`.
    async fn fake(banner: &'static str, answers: Vec<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(banner.as_bytes()).await.unwrap();
            let mut decoder = crate::protocol::ami::Decoder::new();
            let mut answers = answers.into_iter();
            let mut chunk = [0u8; 1024];
            loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                decoder.feed(&chunk[..n]);
                while let Ok(Some(request)) = decoder.next_message() {
                    // Out of answers: stay connected and silent.
                    let Some(answer) = answers.next() else {
                        continue;
                    };
                    let id = request.action_id().unwrap_or_default();
                    let _ = conn.write_all(answer.replace("{id}", id).as_bytes()).await;
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn ping_without_pong_is_bad_response() {
        let port = fake(
            "Asterisk Call Manager/5.0.1\r\n",
            vec![
                "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n",
                "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n",
            ],
        )
        .await;
        let failure = run_probe(&ami(port, SECRET), 1000).await.unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse, "{}", failure.detail);
        assert!(
            failure.detail.contains("Permission denied"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn old_style_pong_and_stray_responses_are_handled() {
        let port = fake(
            "Asterisk Call Manager/1.1\r\n",
            vec![
                "Response: Success\r\nActionID: other\r\n\r\n\
                 Response: Success\r\nActionID: {id}\r\n\r\n",
                "Event: Newchannel\r\nChannel: SIP/100-1\r\n\r\n\
                 Response: Pong\r\nActionID: {id}\r\n\r\n",
                "Response: Goodbye\r\nActionID: {id}\r\n\r\n",
            ],
        )
        .await;
        let obs = run_probe(&ami(port, SECRET), 1000).await.unwrap();
        assert!(
            obs.detail.contains("Asterisk Call Manager/1.1"),
            "{}",
            obs.detail
        );
        assert!(obs.detail.contains("1 event skipped"), "{}", obs.detail);
    }

    #[tokio::test]
    async fn no_response_after_banner_is_timeout() {
        let port = fake("Asterisk Call Manager/7.0.3\r\n", vec![]).await;
        let failure = run_probe(&ami(port, SECRET), 300).await.unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout, "{}", failure.detail);
        assert!(
            failure.detail.contains("no response to Login"),
            "{}",
            failure.detail
        );
    }

    #[tokio::test]
    async fn oversized_message_is_bad_response() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.unwrap();
                let _ = conn
                    .write_all(b"Asterisk Call Manager/7.0.3\r\nEvent: Huge\r\n")
                    .await;
                let line = vec![b'x'; 4096];
                for _ in 0..40 {
                    if conn.write_all(b"X: ").await.is_err()
                        || conn.write_all(&line).await.is_err()
                        || conn.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                }
            });
            port
        };
        let failure = run_probe(&ami(port, SECRET), 2000).await.unwrap_err();
        assert_eq!(failure.reason, Reason::BadResponse, "{}", failure.detail);
    }
}
