//! `kind = "asterisk-ami"`: a persistent Asterisk manager client that stores call events.
//!
//! It connects and logs in with `Events: on` through the health probe's code (same
//! placement, same failure texts), asks the server to send only the configured events
//! (the `Filter` action; a user without the `system` permission is refused, and then the
//! filtering happens here only), and reads events until cancelled. Each event named in
//! `events` (exact names, as Asterisk spells them; empty keeps every event) becomes a JSON
//! object of its fields, stored as kind `ami.<Event>`. Responses to our own actions are
//! not events.
//!
//! AMI has no acknowledgements and no replay: events raised while we are disconnected are
//! lost. So the client keeps the connection checked (Ping every 30 s, dead without an
//! answer within 10 s) and reconnects quickly, with exponential backoff and jitter up to
//! `reconnect_max`. When the spool refuses an event (full, with `block`), the client stops
//! reading until the event is taken: nothing read is dropped, and TCP pushes back on
//! Asterisk (which, after its `writetimeout`, drops the session; we then reconnect).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};
use siteward_config::AmiSource;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Sink, StartError};
use crate::net::{ProbeEnv, Resolver};
use crate::probes::asterisk_ami::{login, Session, LOGOFF_GRACE};
use crate::protocol::ami::{escape_prefix, Kind, Message};
use crate::spool::SpoolError;
use crate::{Failure, Reason};

/// Longest event name accepted (Asterisk's are under 40 characters).
const MAX_EVENT_NAME: usize = 128;

/// The shortest wait between reconnection attempts, whatever `reconnect_max` says.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// The client's clocks; tests shorten them.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Connecting, the banner, Login and the filters, together.
    login: Duration,
    ping_every: Duration,
    /// A Ping unanswered this long (while we are reading) means the connection is dead.
    pong_within: Duration,
    /// The first reconnection delay; it doubles up to `reconnect_max`.
    first_retry: Duration,
    /// A session that stayed up this long restarts the backoff from `first_retry`.
    stable_after: Duration,
    /// Retries of an event the spool refused start this fast and slow down to this.
    spool_retry_first: Duration,
    spool_retry_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            login: Duration::from_secs(10),
            ping_every: Duration::from_secs(30),
            pong_within: Duration::from_secs(10),
            first_retry: Duration::from_millis(500),
            stable_after: Duration::from_secs(60),
            spool_retry_first: Duration::from_millis(10),
            spool_retry_max: Duration::from_secs(1),
        }
    }
}

/// Starts the client. Nothing is opened before it returns (the PBX may be down at start:
/// that is retried, not an error); only the resolver configuration is read.
pub async fn start(
    config: &AmiSource,
    sink: Sink,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    start_with(config, sink, cancel, Timing::default())
}

fn start_with(
    config: &AmiSource,
    sink: Sink,
    cancel: CancellationToken,
    timing: Timing,
) -> Result<JoinHandle<()>, StartError> {
    let resolver = Resolver::from_system().map_err(|e| {
        StartError::new(
            format!("starting connector {:?}: the resolver", sink.connector()),
            e,
        )
    })?;
    let client = Client {
        // Server-side filters only for names that need no escaping in its regex.
        server_filters: !config.events.is_empty()
            && config.events.iter().all(|name| valid_event_name(name)),
        config: config.clone(),
        sink,
        resolver,
        timing,
    };
    Ok(tokio::spawn(client.run(cancel)))
}

struct Client {
    config: AmiSource,
    sink: Sink,
    resolver: Resolver,
    timing: Timing,
    /// Whether to ask the server to filter; off once it refused.
    server_filters: bool,
}

/// How a connection ended.
enum Ended {
    Cancelled,
    /// Connecting, the banner, Login or the filters failed.
    Login(Failure),
    /// The connection was up and broke (closed, reset, malformed, no answer to Ping).
    Lost(Failure),
}

/// The task was cancelled while waiting.
struct Cancelled;

impl Client {
    async fn run(mut self, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let ended = self.connect_and_serve(&cancel).await;
            self.set_connected(false);
            if started.elapsed() >= self.timing.stable_after {
                failures = 0;
            }
            let delay = backoff(failures, self.timing.first_retry, self.config.reconnect_max);
            failures = failures.saturating_add(1);
            let connector = self.sink.connector();
            let target = &self.config.target;
            match ended {
                Ended::Cancelled => return,
                Ended::Login(failure) if failure.reason == Reason::AuthFailed => {
                    warn!(connector, %target, retry_in = ?delay,
                        "asterisk-ami login refused: {}", failure.detail);
                }
                Ended::Login(failure) => {
                    warn!(connector, %target, reason = failure.reason.as_str(), retry_in = ?delay,
                        "asterisk-ami cannot connect: {}", failure.detail);
                }
                Ended::Lost(failure) => {
                    warn!(connector, %target, reason = failure.reason.as_str(), retry_in = ?delay,
                        "asterisk-ami connection lost: {}", failure.detail);
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sleep(delay) => {}
            }
        }
    }

    fn set_connected(&self, connected: bool) {
        self.sink
            .counters()
            .connected
            .store(u64::from(connected), Ordering::Relaxed);
    }

    async fn connect_and_serve(&mut self, cancel: &CancellationToken) -> Ended {
        let logged_in = tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            logged_in = self.log_in() => logged_in,
        };
        let (mut session, banner) = match logged_in {
            Ok(logged_in) => logged_in,
            Err(failure) => return Ended::Login(failure),
        };
        self.set_connected(true);
        info!(connector = self.sink.connector(), peer = session.peer(), %banner,
            username = %self.config.username, "asterisk-ami connected and logged in");
        self.serve(&mut session, cancel).await
    }

    async fn log_in(&mut self) -> Result<(Session, String), Failure> {
        let env = ProbeEnv {
            resolver: &self.resolver,
            placement: &self.config.placement,
            deadline: Instant::now() + self.timing.login,
        };
        let c = &self.config;
        let (mut session, banner) = login(&c.target, &c.username, &c.secret, true, &env).await?;
        if self.server_filters {
            self.add_filters(&mut session, env.deadline).await?;
        }
        Ok((session, banner))
    }

    /// Asks the server to send only the configured events: a white filter `Event: <name>`
    /// each (a regular expression matched against the whole event, so it may let more
    /// through; the exact choice is made here). Refused (no `system` permission): we filter
    /// here only, from now on. Refused after some were added, the server would withhold
    /// wanted events: that session is dropped and the next one runs without filters.
    async fn add_filters(
        &mut self,
        session: &mut Session,
        deadline: Instant,
    ) -> Result<(), Failure> {
        for (added, name) in self.config.events.iter().enumerate() {
            let filter = Message::action("Filter")
                .with("Operation", "Add")
                .with("Filter", format!("Event: {name}"));
            let response = session.call(filter, "Filter", deadline).await?;
            if matches!(response.kind(), Kind::Response(r) if r.eq_ignore_ascii_case("Success")) {
                continue;
            }
            self.server_filters = false;
            let message = response.get("Message").unwrap_or("no message");
            if added == 0 {
                info!(
                    connector = self.sink.connector(),
                    peer = session.peer(),
                    "the server refused event filters ({message}); filtering events here only"
                );
                return Ok(());
            }
            return Err(Failure::new(
                Reason::BadResponse,
                format!(
                    "{} accepted {added} event filters, then refused one ({message}); \
                     reconnecting without server-side filters",
                    session.peer()
                ),
            ));
        }
        Ok(())
    }

    /// Reads and stores events until the connection breaks or `cancel`.
    async fn serve(&self, session: &mut Session, cancel: &CancellationToken) -> Ended {
        let every = self.timing.ping_every;
        let mut ping = interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut awaiting_pong: Option<(String, Instant)> = None;
        loop {
            // First everything already read: events held during Login, then the buffer.
            loop {
                let message = match session.next_held() {
                    Some(message) => message,
                    None => match session.next_message() {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(failure) => {
                            self.sink.reject();
                            return Ended::Lost(failure);
                        }
                    },
                };
                if self
                    .handle(&message, &mut awaiting_pong, cancel)
                    .await
                    .is_err()
                {
                    session.logoff(Instant::now() + LOGOFF_GRACE).await;
                    return Ended::Cancelled;
                }
            }
            let pong_deadline = awaiting_pong.as_ref().map(|(_, deadline)| *deadline);
            tokio::select! {
                _ = cancel.cancelled() => {
                    session.logoff(Instant::now() + LOGOFF_GRACE).await;
                    return Ended::Cancelled;
                }
                read = session.read_more() => {
                    if let Err(failure) = read {
                        return Ended::Lost(failure);
                    }
                }
                _ = ping.tick(), if awaiting_pong.is_none() => {
                    match session.send(Message::action("Ping"), "Ping").await {
                        Ok(id) => awaiting_pong = Some((id, Instant::now() + self.timing.pong_within)),
                        Err(failure) => return Ended::Lost(failure),
                    }
                }
                _ = sleep_until(pong_deadline.unwrap_or_else(Instant::now)), if pong_deadline.is_some() => {
                    return Ended::Lost(Failure::new(
                        Reason::Timeout,
                        format!("{} did not answer Ping within {:?}", session.peer(), self.timing.pong_within),
                    ));
                }
            }
        }
    }

    async fn handle(
        &self,
        message: &Message,
        awaiting_pong: &mut Option<(String, Instant)>,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let connector = self.sink.connector();
        match message.kind() {
            Kind::Response(_) => {
                let id = message.action_id();
                if awaiting_pong.as_ref().map(|(ping, _)| ping.as_str()) == id {
                    *awaiting_pong = None;
                } else {
                    debug!(connector, ?id, "ignoring a response to no pending action");
                }
            }
            Kind::Event(name) => {
                if !self.wanted(name) {
                    debug!(connector, event = name, "event not in the filter");
                    return Ok(());
                }
                if !valid_event_name(name) {
                    self.sink.reject();
                    warn!(
                        connector,
                        "dropping an event with an unusable name: {}",
                        escape_prefix(name.as_bytes(), 60)
                    );
                    return Ok(());
                }
                let payload = match event_json(message) {
                    Ok(payload) => payload,
                    Err(e) => {
                        self.sink.reject();
                        warn!(
                            connector,
                            event = name,
                            "dropping an event that cannot be JSON: {e}"
                        );
                        return Ok(());
                    }
                };
                if self.store(&format!("ami.{name}"), payload, cancel).await? {
                    // The Ping's answer waited in the socket meanwhile: time it from now.
                    if let Some((_, deadline)) = awaiting_pong {
                        *deadline = (*deadline).max(Instant::now() + self.timing.pong_within);
                    }
                }
            }
            Kind::Action(_) | Kind::Other => {
                debug!(
                    connector,
                    "ignoring a message that is neither a response nor an event"
                );
            }
        }
        Ok(())
    }

    fn wanted(&self, name: &str) -> bool {
        self.config.events.is_empty() || self.config.events.iter().any(|e| e == name)
    }

    /// Stores one event, retrying while the spool refuses it (the socket is not read
    /// meanwhile). Returns whether it had to wait.
    async fn store(
        &self,
        kind: &str,
        payload: Vec<u8>,
        cancel: &CancellationToken,
    ) -> Result<bool, Cancelled> {
        let connector = self.sink.connector();
        let mut delay = self.timing.spool_retry_first;
        let mut waited = false;
        loop {
            match self.sink.accept(kind, payload.clone()).await {
                Ok(_) => {
                    if waited {
                        info!(
                            connector,
                            "the spool accepts events again; reading from Asterisk again"
                        );
                    }
                    return Ok(waited);
                }
                Err(e @ (SpoolError::TooLarge { .. } | SpoolError::Record(_))) => {
                    self.sink.reject();
                    warn!(
                        connector,
                        kind, "dropping an event the spool can never hold: {e}"
                    );
                    return Ok(waited);
                }
                Err(e) => {
                    if !waited {
                        warn!(connector, kind,
                            "the spool refuses events ({e}); not reading from Asterisk until it accepts them");
                        waited = true;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(Cancelled),
                        _ = sleep(delay) => {}
                    }
                    delay = delay.saturating_mul(2).min(self.timing.spool_retry_max);
                }
            }
        }
    }
}

/// Event names we store as `ami.<name>` and may put in a server-side filter unescaped:
/// letters, digits, `_` and `-`, as Asterisk's are.
fn valid_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The wait before the next reconnection after `failures` failed attempts: doubling from
/// `first`, capped at `max`, then a random point in its upper half, so appliances cut off
/// together do not reconnect in step, yet never retry in a tight loop.
fn backoff(failures: u32, first: Duration, max: Duration) -> Duration {
    let ceiling = first
        .saturating_mul(2u32.saturating_pow(failures))
        .min(max)
        .max(MIN_BACKOFF);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

/// An event as a JSON object: keys as sent, in the order sent. A key sent more than once
/// becomes an array of its values, and so is a channel-variable key (`ChanVariable`,
/// `DestChanVariable`...) always, so consumers see one shape however many are set.
pub fn event_json(message: &Message) -> Result<Vec<u8>, serde_json::Error> {
    let mut fields: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (key, value) in message.fields() {
        match position.get(key.as_str()) {
            Some(&at) => {
                if let Some((_, values)) = fields.get_mut(at) {
                    values.push(value);
                }
            }
            None => {
                position.insert(key, fields.len());
                fields.push((key, vec![value]));
            }
        }
    }
    serde_json::to_vec(&Fields(fields))
}

struct Fields<'a>(Vec<(&'a str, Vec<&'a str>)>);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, values) in &self.0 {
            match values.as_slice() {
                [one] if !is_variable_key(key) => map.serialize_entry(key, one)?,
                all => map.serialize_entry(key, all)?,
            }
        }
        map.end()
    }
}

fn is_variable_key(key: &str) -> bool {
    const SUFFIX: &str = "chanvariable";
    key.len() >= SUFFIX.len()
        && key
            .get(key.len() - SUFFIX.len()..)
            .is_some_and(|end| end.eq_ignore_ascii_case(SUFFIX))
}
