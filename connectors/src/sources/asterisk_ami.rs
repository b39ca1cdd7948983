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
/// that is retried, not an error); its name is resolved with `resolver` at each connection.
pub async fn start(
    config: &AmiSource,
    sink: Sink,
    resolver: Resolver,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    Ok(start_with(
        config,
        sink,
        resolver,
        cancel,
        Timing::default(),
    ))
}

fn start_with(
    config: &AmiSource,
    sink: Sink,
    resolver: Resolver,
    cancel: CancellationToken,
    timing: Timing,
) -> JoinHandle<()> {
    let client = Client {
        // Server-side filters only for names that need no escaping in its regex.
        server_filters: !config.events.is_empty()
            && config.events.iter().all(|name| valid_event_name(name)),
        config: config.clone(),
        sink,
        resolver,
        timing,
    };
    tokio::spawn(client.run(cancel))
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
            match self.sink.append(kind, payload.clone()).await {
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
                        // Counted once, however long it waits.
                        self.sink.count_refused(1);
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

// The simulator stands in for Asterisk, which cannot be installed here; it speaks AMI
// with the same codec and reports calls with the field names Asterisk documents.
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;
    use serde_json::{json, Value};
    use siteward_config::{Host, HostPort, Placement, Secret, WhenFull};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::{mpsc, Notify};

    use crate::protocol::ami::{decode_message, Decoder};
    use crate::simulate::asterisk_ami::{serve_with, Call, CallOutcome, Control, Mode, Options};
    use crate::sources::ConnectorCounters;
    use crate::spool::{Event, Spool};

    const SECRET: &str = "pbx-s3cret";

    fn sim_options() -> Options {
        Options {
            mode: Mode::Ok,
            username: "siteward".into(),
            secret: Some(Secret::new(SECRET)),
            secret_file: None,
            version: "7.0.3".into(),
            delay_ms: 0,
            events: false,
            // Calls come only from the tests.
            event_interval_ms: 0,
            interleaved_calls: false,
            read_only_user: false,
        }
    }

    struct Pbx {
        addr: SocketAddr,
        control: Control,
        shutdown: CancellationToken,
        task: JoinHandle<io::Result<()>>,
    }

    impl Drop for Pbx {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn pbx_on(listener: TcpListener, options: Options) -> Pbx {
        let addr = listener.local_addr().unwrap();
        let control = Control::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with(
            listener,
            options,
            control.clone(),
            shutdown.clone(),
        ));
        Pbx {
            addr,
            control,
            shutdown,
            task,
        }
    }

    async fn pbx(options: Options) -> Pbx {
        pbx_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), options).await
    }

    /// Fast clocks, so reconnections and keep-alives happen within a test.
    fn fast() -> Timing {
        Timing {
            first_retry: Duration::from_millis(10),
            ..Timing::default()
        }
    }

    struct Connector {
        spool: Arc<Spool>,
        counters: Arc<ConnectorCounters>,
        cancel: CancellationToken,
        task: JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl Drop for Connector {
        fn drop(&mut self) {
            self.cancel.cancel();
        }
    }

    fn config(addr: SocketAddr, events: &[&str], secret: &str) -> AmiSource {
        AmiSource {
            target: HostPort {
                host: Host::Ip(addr.ip()),
                port: addr.port(),
            },
            username: "siteward".into(),
            secret: Secret::new(secret),
            events: events.iter().map(|e| e.to_string()).collect(),
            reconnect_max: Duration::from_millis(50),
            placement: Placement::default(),
        }
    }

    fn connector(config: &AmiSource, spool_bytes: u64, timing: Timing) -> Connector {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(&dir.path().join("spool.redb"), spool_bytes).unwrap());
        let counters = Arc::new(ConnectorCounters::default());
        let sink = Sink::new(
            "pbx",
            WhenFull::Block,
            spool.clone(),
            Arc::new(Notify::new()),
            counters.clone(),
        );
        let cancel = CancellationToken::new();
        let resolver = Resolver::from_system().unwrap();
        let task = start_with(config, sink, resolver, cancel.clone(), timing);
        Connector {
            spool,
            counters,
            cancel,
            task,
            _dir: dir,
        }
    }

    impl Connector {
        fn connected(&self) -> u64 {
            self.counters.connected.load(Ordering::Relaxed)
        }

        fn received(&self) -> u64 {
            self.counters.received.load(Ordering::Relaxed)
        }

        fn rejected(&self) -> u64 {
            self.counters.rejected.load(Ordering::Relaxed)
        }

        fn stored(&self) -> Vec<Event> {
            self.spool
                .peek(None, 1000, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(_, event)| event)
                .collect()
        }

        /// Cancels the client and waits for its task, which must end (not hang or panic).
        async fn stop(mut self) {
            self.cancel.cancel();
            let task = &mut self.task;
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the client did not stop when cancelled")
                .expect("the client task panicked");
        }
    }

    /// Polls `done` until it holds, failing after a generous bound.
    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < give_up, "gave up waiting for {what}");
            sleep(Duration::from_millis(5)).await;
        }
    }

    fn kinds(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    fn json_of(event: &Event) -> Value {
        serde_json::from_slice(&event.payload).unwrap()
    }

    /// Log lines of the test's thread (tokio tests run their tasks on it).
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
            let logs = Logs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            (logs, tracing::subscriber::set_default(subscriber))
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }

        fn lines_with(&self, needle: &str) -> Vec<String> {
            self.text()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_string)
                .collect()
        }
    }

    fn answered(secs: u64) -> CallOutcome {
        CallOutcome::Answered {
            talk: Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn a_call_is_stored_event_by_event_in_order_with_its_exact_fields() {
        let pbx = pbx(sim_options()).await;
        let c = connector(&config(pbx.addr, &[], SECRET), 1 << 20, fast());
        wait_for("login", || c.connected() == 1).await;

        let call = pbx.control.place_call(
            &Call::new("1001", "1002", answered(57))
                .with_variable("DEPT", "sales")
                .with_variable("QUEUE", "support"),
        );
        let expected = 1 + call.events.len() as u64;
        wait_for("the call's events", || c.received() == expected).await;
        let stored = c.stored();
        assert_eq!(
            kinds(&stored),
            [
                "ami.FullyBooted",
                "ami.Newchannel",
                "ami.Newchannel",
                "ami.DialBegin",
                "ami.Newstate",
                "ami.Newstate",
                "ami.DialEnd",
                "ami.Newstate",
                "ami.Hangup",
                "ami.Hangup",
                "ami.Cdr",
            ]
        );
        assert!(stored.iter().all(|e| e.connector == "pbx"));

        // Every field the PBX sent is in the stored object, repeated keys as arrays.
        for (event, sent) in stored[1..].iter().zip(&call.events) {
            let object = json_of(event);
            for (key, value) in sent.fields() {
                let stored_value = &object[key.as_str()];
                let found = match stored_value {
                    Value::String(s) => s == value,
                    Value::Array(all) => all.iter().any(|v| v == value.as_str()),
                    _ => false,
                };
                assert!(found, "{key}: {value:?} missing from {object}");
            }
            assert_eq!(object.as_object().unwrap().len(), {
                let mut keys: Vec<_> = sent.fields().iter().map(|(k, _)| k).collect();
                keys.dedup();
                keys.len()
            });
        }

        // The caller's Hangup, byte for byte: keys in the order sent.
        let hangup = String::from_utf8(stored[9].payload.clone()).unwrap();
        let (channel, id) = (&call.caller_channel, &call.caller_uniqueid);
        assert_eq!(
            hangup,
            format!(
                r#"{{"Event":"Hangup","Privilege":"call,all","Channel":"{channel}","ChannelState":"6","ChannelStateDesc":"Up","CallerIDNum":"1001","CallerIDName":"Extension 1001","ConnectedLineNum":"<unknown>","ConnectedLineName":"<unknown>","Language":"en","AccountCode":"","Context":"from-internal","Exten":"1002","Priority":"1","Uniqueid":"{id}","Linkedid":"{id}","ChanVariable":["DEPT=sales","QUEUE=support"],"Cause":"16","Cause-txt":"Normal Clearing"}}"#
            )
        );
        let cdr = json_of(&stored[10]);
        assert_eq!(cdr["Disposition"], "ANSWERED");
        assert_eq!(cdr["Duration"], "60");
        assert_eq!(cdr["BillableSeconds"], "57");
        assert_eq!(cdr["DestinationChannel"], json!(call.callee_channel));
        assert_eq!(cdr["CallerID"], "\"Extension 1001\" <1001>");

        c.stop().await;
    }

    #[tokio::test]
    async fn the_filter_keeps_only_the_named_events_with_or_without_server_filters() {
        for read_only_user in [false, true] {
            let mut options = sim_options();
            options.read_only_user = read_only_user;
            let pbx = pbx(options).await;
            let c = connector(
                &config(pbx.addr, &["Hangup", "Cdr"], SECRET),
                1 << 20,
                fast(),
            );
            wait_for("login", || c.connected() == 1).await;
            let call = pbx
                .control
                .place_call(&Call::new("2001", "2002", CallOutcome::Busy));
            // A second call ends with Cdr: once it is stored, everything before it was read.
            let last = pbx
                .control
                .place_call(&Call::new("2003", "2004", CallOutcome::NoAnswer));
            wait_for("the filtered events", || c.received() == 6).await;
            let stored = c.stored();
            assert_eq!(
                kinds(&stored),
                [
                    "ami.Hangup",
                    "ami.Hangup",
                    "ami.Cdr",
                    "ami.Hangup",
                    "ami.Hangup",
                    "ami.Cdr"
                ],
                "read_only_user = {read_only_user}"
            );
            assert_eq!(json_of(&stored[1])["Channel"], json!(call.caller_channel));
            assert_eq!(json_of(&stored[5])["UniqueID"], json!(last.caller_uniqueid));
            // With filters the server sent FullyBooted (before they were added) and the
            // six wanted events; refused, it sent everything and we chose here.
            let sent = if read_only_user {
                1 + call.events.len() + last.events.len()
            } else {
                1 + 6
            } as u64;
            wait_for("the server's count", || pbx.control.events_sent() == sent).await;
            c.stop().await;
        }
    }

    #[tokio::test]
    async fn reconnects_after_the_pbx_drops_the_connection_or_restarts() {
        let (logs, _guard) = Logs::capture();
        let pbx = pbx(sim_options()).await;
        let c = connector(&config(pbx.addr, &["Cdr"], SECRET), 1 << 20, fast());
        wait_for("login", || c.connected() == 1).await;

        // Sessions dropped, the PBX still up: the client logs in again at once.
        pbx.control.drop_connections();
        wait_for("a second login", || pbx.control.logins() == 2).await;
        wait_for("connected again", || c.connected() == 1).await;
        let call = pbx
            .control
            .place_call(&Call::new("1001", "1002", answered(3)));
        wait_for("the call after the reconnection", || c.received() == 1).await;
        assert_eq!(
            json_of(&c.stored()[0])["UniqueID"],
            json!(call.caller_uniqueid)
        );

        // The PBX goes away: not connected while it is down.
        let addr = pbx.addr;
        pbx.shutdown.cancel();
        let mut pbx = pbx;
        (&mut pbx.task).await.unwrap().unwrap();
        drop(pbx);
        wait_for("disconnected", || c.connected() == 0).await;
        assert!(!c.task.is_finished());

        // It comes back on the same address: connected again, and its calls arrive.
        let pbx = pbx_on(TcpListener::bind(addr).await.unwrap(), sim_options()).await;
        wait_for("connected to the restarted PBX", || c.connected() == 1).await;
        let call = pbx
            .control
            .place_call(&Call::new("1003", "1004", CallOutcome::Busy));
        wait_for("the call after the restart", || c.received() == 2).await;
        assert_eq!(
            json_of(&c.stored()[1])["UniqueID"],
            json!(call.caller_uniqueid)
        );

        let lost = logs.lines_with("asterisk-ami connection lost");
        assert!(!lost.is_empty(), "{}", logs.text());
        assert!(
            lost.iter().all(|l| l.contains("WARN") && l.contains("pbx")),
            "{lost:?}"
        );
        let connected = logs.lines_with("asterisk-ami connected and logged in");
        assert!(connected.len() >= 3, "{}", logs.text());
        assert!(connected
            .iter()
            .all(|l| l.contains("INFO") && l.contains("pbx")));
        c.stop().await;
    }

    #[tokio::test]
    async fn a_wrong_secret_is_not_connected_retried_and_logged_without_the_secret() {
        let (logs, _guard) = Logs::capture();
        let pbx = pbx(sim_options()).await;
        let c = connector(&config(pbx.addr, &[], "wrong-secret"), 1 << 20, fast());
        wait_for("three refused logins", || pbx.control.refused_logins() >= 3).await;
        assert_eq!(c.connected(), 0);
        assert_eq!(pbx.control.logins(), 0);
        assert_eq!(c.received(), 0);
        let refused = logs.lines_with("asterisk-ami login refused");
        assert!(refused.len() >= 2, "{}", logs.text());
        for line in &refused {
            assert!(line.contains("WARN") && line.contains("pbx"), "{line}");
            assert!(line.contains("Authentication failed"), "{line}");
            assert!(line.contains("\"siteward\""), "{line}");
        }
        assert!(!logs.text().contains("wrong-secret"), "{}", logs.text());
        c.stop().await;
    }

    /// What a fake PBX does with one connection.
    #[derive(Debug, Clone, Copy)]
    enum Fake {
        /// Another protocol's greeting.
        GarbageBanner,
        /// A banner, a successful login, then a line that is not AMI.
        GarbageAfterLogin,
        /// A banner, a successful login, then an endless message.
        Oversized,
        /// A banner, a successful login, then nothing, Ping unanswered.
        SilentAfterLogin,
    }

    /// A fake PBX acting out `script`, one entry per connection (the last repeats); each
    /// accepted connection is reported on the channel.
    async fn fake_pbx(script: Vec<Fake>) -> (SocketAddr, mpsc::UnboundedReceiver<Fake>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, report) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let Some(&act) = script.get(n).or(script.last()) else {
                    return;
                };
                let _ = accepted.send(act);
                tokio::spawn(async move {
                    if let Fake::GarbageBanner = act {
                        let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                        return;
                    }
                    let _ = conn.write_all(b"Asterisk Call Manager/7.0.3\r\n").await;
                    let mut decoder = Decoder::new();
                    let mut chunk = [0u8; 1024];
                    let login = loop {
                        if let Ok(Some(m)) = decoder.next_message() {
                            break m;
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => decoder.feed(&chunk[..n]),
                        }
                    };
                    let id = login.action_id().unwrap_or_default();
                    let ok = format!("Response: Success\r\nActionID: {id}\r\n\r\n");
                    let _ = conn.write_all(ok.as_bytes()).await;
                    match act {
                        Fake::GarbageAfterLogin => {
                            let _ = conn.write_all(b"\x00\xffnot AMI at all\r\n\r\n").await;
                        }
                        Fake::Oversized => {
                            let _ = conn.write_all(b"Event: Huge\r\nX: ").await;
                            let filler = vec![b'x'; 8192];
                            while conn.write_all(&filler).await.is_ok() {}
                            return;
                        }
                        Fake::SilentAfterLogin | Fake::GarbageBanner => {}
                    }
                    // Keep the connection open (reading and ignoring) until the client goes.
                    while matches!(conn.read(&mut chunk).await, Ok(n) if n > 0) {}
                });
            }
        });
        (addr, report)
    }

    #[tokio::test]
    async fn malformed_bytes_from_the_server_drop_the_connection_and_are_retried() {
        let (logs, _guard) = Logs::capture();
        let script = vec![
            Fake::GarbageBanner,
            Fake::GarbageAfterLogin,
            Fake::Oversized,
            Fake::SilentAfterLogin,
        ];
        let (addr, mut accepted) = fake_pbx(script.clone()).await;
        let c = connector(&config(addr, &[], SECRET), 1 << 20, fast());
        for expected in script {
            let act = accepted.recv().await.unwrap();
            assert_eq!(format!("{act:?}"), format!("{expected:?}"));
        }
        // The last connection stays up (its first Ping is 30 s away).
        wait_for("connected", || c.connected() == 1).await;
        // Garbage and the oversized message were counted; the banner was a failed login.
        assert_eq!(c.rejected(), 2);
        assert_eq!(c.received(), 0);
        assert!(!c.task.is_finished());
        let text = logs.text();
        assert!(text.contains("not an AMI banner"), "{text}");
        assert!(text.contains("AMI line without ':'"), "{text}");
        assert!(text.contains("65536"), "{text}");
        c.stop().await;
    }

    #[tokio::test]
    async fn keep_alive_pings_keep_a_live_session_and_end_a_dead_one() {
        let timing = Timing {
            ping_every: Duration::from_millis(20),
            pong_within: Duration::from_secs(1),
            ..fast()
        };
        // A live PBX answers every Ping: the session stays the first one.
        let pbx = pbx(sim_options()).await;
        let c = connector(&config(pbx.addr, &[], SECRET), 1 << 20, timing);
        wait_for("three pings", || pbx.control.pings() >= 3).await;
        assert_eq!(pbx.control.logins(), 1);
        assert_eq!(c.connected(), 1);
        c.stop().await;

        // A PBX that stops answering is left, and another session is opened.
        let (logs, _guard) = Logs::capture();
        let (addr, mut accepted) = fake_pbx(vec![Fake::SilentAfterLogin]).await;
        let c = connector(&config(addr, &[], SECRET), 1 << 20, timing);
        accepted.recv().await.unwrap();
        accepted.recv().await.unwrap();
        assert!(
            logs.text().contains("did not answer Ping"),
            "{}",
            logs.text()
        );
        c.stop().await;
    }

    #[tokio::test]
    async fn a_full_spool_pauses_reading_and_loses_nothing() {
        let pbx = pbx(sim_options()).await;
        // Room for a few events only: the call's ten do not fit at once.
        let c = connector(&config(pbx.addr, &[], SECRET), 3000, fast());
        wait_for("login", || c.connected() == 1).await;
        let call = pbx
            .control
            .place_call(&Call::new("1001", "1002", answered(9)));
        let total = 1 + call.events.len() as u64;
        wait_for("the spool to refuse", || {
            c.counters.refused.load(Ordering::Relaxed) > 0
        })
        .await;
        assert!(c.received() < total);

        // Delivering what is stored (as the uplink would) lets the rest in, in order.
        let mut delivered = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(20);
        while (delivered.len() as u64) < total {
            assert!(Instant::now() < give_up, "only {delivered:?} delivered");
            let batch = c.spool.peek(None, 100, usize::MAX).unwrap();
            if batch.is_empty() {
                sleep(Duration::from_millis(5)).await;
                continue;
            }
            c.spool
                .remove(batch.iter().map(|(sequence, _)| *sequence).collect())
                .await
                .unwrap();
            delivered.extend(batch.into_iter().map(|(_, e)| e));
        }
        let mut expected = vec!["ami.FullyBooted".to_string()];
        expected.extend(
            call.events
                .iter()
                .map(|e| format!("ami.{}", e.get("Event").unwrap())),
        );
        assert_eq!(kinds(&delivered), expected);
        assert_eq!(c.received(), total);
        assert_eq!(c.connected(), 1);
        c.stop().await;
    }

    #[test]
    fn event_json_keeps_order_and_turns_repeated_and_variable_keys_into_arrays() {
        let (message, _) = decode_message(
            b"Event: VarSet\r\nChannel: PJSIP/1-1\r\nDestChanVariable: A=1\r\n\
              Note: \"quoted\" \\ back\r\nVariable: x=1\r\nVariable: y=2\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        let json = String::from_utf8(event_json(&message).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"Event":"VarSet","Channel":"PJSIP/1-1","DestChanVariable":["A=1"],"Note":"\"quoted\" \\ back","Variable":["x=1","y=2"]}"#
        );
    }

    #[test]
    fn event_names_and_variable_keys() {
        assert!(valid_event_name("Newchannel"));
        assert!(valid_event_name("Cause-txt"));
        assert!(!valid_event_name(""));
        assert!(!valid_event_name("Hangup.*"));
        assert!(!valid_event_name("a b"));
        assert!(!valid_event_name(&"x".repeat(MAX_EVENT_NAME + 1)));
        assert!(is_variable_key("ChanVariable"));
        assert!(is_variable_key("destchanvariable"));
        assert!(!is_variable_key("Variable"));
        assert!(!is_variable_key("é"));
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_bounds(
            failures in 0u32..100,
            first_ms in 0u64..5_000,
            max_ms in 0u64..600_000,
        ) {
            let first = Duration::from_millis(first_ms);
            let max = Duration::from_millis(max_ms);
            let ceiling = first
                .saturating_mul(2u32.saturating_pow(failures))
                .min(max)
                .max(MIN_BACKOFF);
            let delay = backoff(failures, first, max);
            prop_assert!(delay <= ceiling);
            prop_assert!(delay >= ceiling / 2);
            prop_assert!(delay >= MIN_BACKOFF / 2);
        }

        #[test]
        fn any_decoded_message_becomes_a_json_object_of_its_keys(
            wire in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            if let Ok(Some((message, _))) = decode_message(&wire) {
                let json: Value = serde_json::from_slice(&event_json(&message).unwrap()).unwrap();
                let object = json.as_object().unwrap();
                for (key, value) in message.fields() {
                    let stored = &object[key.as_str()];
                    prop_assert!(
                        stored == value.as_str()
                            || stored.as_array().is_some_and(|all| all.iter().any(|v| v == value.as_str()))
                    );
                }
            }
        }
    }
}
