//! `siteward simulate asterisk-ami`: an Asterisk manager interface (port 5038 on a PBX).
//!
//! It greets with `Asterisk Call Manager/<version>`, answers Login (closing the
//! connection after `Authentication failed`, as Asterisk does), Ping, Events, Filter,
//! Logoff and any other action (`Permission denied` before login, `Invalid/unknown
//! command` after). A session listens for events once it asked for them (`Events:` other
//! than `off` in Login, the `Events` action, or `--events`): it then gets FullyBooted, and
//! every call placed afterwards as the sequence Asterisk 18 reports for it (Newchannel,
//! Newstate, DialBegin, DialEnd, Hangup, Cdr; field names from Asterisk's AMI event
//! documentation). Calls are placed by a test through [`Control::place_call`], every
//! `--event-interval-ms`, and (unless `--no-interleaved-calls`) just before every response
//! after login, so clients must match responses by ActionID. [`Control::drop_connections`]
//! closes every session, as a PBX restart would.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use siteward_config::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::accept_loop;
use crate::protocol::ami::{Banner, Decoder, Message};

/// A connection with no traffic for this long is closed (Asterisk's own `authtimeout`
/// is 30 s for sessions that never log in).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client sees in `garbage` mode: a different service's greeting and binary noise.
const GARBAGE: &[u8] = b"220 mail.example.com ESMTP ready\r\n\x00\xff\x16\x03\x01\r\n";

/// Calls (and drop requests) a session may fall behind by before it is closed, as
/// Asterisk closes a manager client that does not read its events.
const COMMAND_BACKLOG: usize = 4096;

/// The dialplan context every simulated call runs in.
const CONTEXT: &str = "from-internal";

/// How long a simulated call rings before it is answered, and before Dial gives up.
const RING_ANSWERED: Duration = Duration::from_secs(3);
const RING_TIMEOUT: Duration = Duration::from_secs(30);

/// Regular-expression metacharacters: a Filter using them unescaped is refused, since the
/// simulator matches filters as literal text.
const REGEX_META: &str = ".[]()*+?{}|^$";

/// How the simulator behaves towards every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A working manager interface.
    Ok,
    /// Accept, then never send a byte (input is read and discarded).
    Silent,
    /// Send another protocol's greeting and binary noise instead of a banner, then close.
    Garbage,
    /// Like ok, but wait --delay-ms before the banner and before every response.
    Slow,
    /// Accept and close at once, without a banner (a full session limit or a TCP wrapper).
    NoBanner,
}

/// Options of `siteward simulate asterisk-ami`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How to behave towards clients.
    #[arg(long, value_enum, default_value_t = Mode::Ok)]
    pub mode: Mode,
    /// Manager user accepted by Login (compared case-insensitively, as Asterisk does).
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// Secret accepted by Login. Other local users can see command lines: prefer --secret-file.
    #[arg(
        long,
        value_parser = parse_secret,
        required_unless_present = "secret_file",
        conflicts_with = "secret_file"
    )]
    pub secret: Option<Secret>,
    /// File holding the secret accepted by Login (a trailing newline is ignored).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// AMI protocol version in the banner (Asterisk 18 reports 7.0.x, 16 reports 5.0.x).
    #[arg(long, default_value = "7.0.3")]
    pub version: String,
    /// Delay before each answer in slow mode, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub delay_ms: u64,
    /// Send events to every logged-in session, even when Login asks for `Events: off`.
    #[arg(long)]
    pub events: bool,
    /// Place a call every this many milliseconds (0: only calls placed by a test).
    #[arg(long, default_value_t = 1000)]
    pub event_interval_ms: u64,
    /// Do not emit a call's events just before every response after login.
    #[arg(long = "no-interleaved-calls", action = clap::ArgAction::SetFalse)]
    pub interleaved_calls: bool,
    /// The manager user lacks the `system` write permission, so the Filter action is
    /// refused with `Permission denied`, as Asterisk does.
    #[arg(long)]
    pub read_only_user: bool,
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.is_empty() {
        return Err("the secret may not be empty".into());
    }
    Ok(Secret::new(value))
}

/// One simulated call: who calls whom and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The caller's extension (its CallerIDNum and PJSIP endpoint).
    pub from: String,
    pub caller_name: String,
    /// The dialled extension.
    pub to: String,
    pub outcome: CallOutcome,
    /// Channel variables the PBX reports (manager.conf `channelvars`): the caller's
    /// values; the callee's channel reports the same names, unset.
    pub variables: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// Rings, is answered, and both sides talk for this long.
    Answered { talk: Duration },
    /// The callee is busy: Dial ends with BUSY without ringing.
    Busy,
    /// Rings until Dial's timeout: NOANSWER.
    NoAnswer,
}

impl Call {
    pub fn new(from: &str, to: &str, outcome: CallOutcome) -> Call {
        Call {
            from: from.to_string(),
            caller_name: format!("Extension {from}"),
            to: to.to_string(),
            outcome,
            variables: Vec::new(),
        }
    }

    /// Adds a channel variable to the caller's channel (builder style).
    pub fn with_variable(mut self, name: &str, value: &str) -> Call {
        self.variables.push((name.to_string(), value.to_string()));
        self
    }
}

/// What a placed call looked like on the wire, for tests to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    pub caller_channel: String,
    /// The caller's Uniqueid, which is also both channels' Linkedid.
    pub caller_uniqueid: String,
    pub callee_channel: String,
    pub callee_uniqueid: String,
    /// The events every listening session was sent, in order.
    pub events: Vec<Message>,
}

/// Drives a running simulator: places calls every listening session sees, and drops
/// every session. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<ControlInner>,
}

struct ControlInner {
    commands: broadcast::Sender<Command>,
    /// Keeps call numbers in the order calls are broadcast.
    placing: std::sync::Mutex<()>,
    calls: AtomicU64,
    /// Asterisk numbers channels with one counter, shown in hex in channel names.
    channels: AtomicU64,
    events_sent: AtomicU64,
    logins: AtomicU64,
    refused_logins: AtomicU64,
    pings: AtomicU64,
}

#[derive(Debug, Clone)]
enum Command {
    /// Call number `number` (numbers start at 1).
    Call {
        number: u64,
        events: Arc<[Message]>,
    },
    DropConnections,
}

impl Default for Control {
    fn default() -> Self {
        Control::new()
    }
}

impl Control {
    pub fn new() -> Control {
        let (commands, _) = broadcast::channel(COMMAND_BACKLOG);
        Control {
            inner: Arc::new(ControlInner {
                commands,
                placing: std::sync::Mutex::new(()),
                calls: AtomicU64::new(0),
                channels: AtomicU64::new(0),
                events_sent: AtomicU64::new(0),
                logins: AtomicU64::new(0),
                refused_logins: AtomicU64::new(0),
                pings: AtomicU64::new(0),
            }),
        }
    }

    /// Sends the events of `call` to every session listening for events now; sessions
    /// that start listening later do not see it.
    pub fn place_call(&self, call: &Call) -> PlacedCall {
        let placed = self.call_events(call);
        let _order = self.inner.placing.lock().unwrap_or_else(|e| e.into_inner());
        let number = self.inner.calls.fetch_add(1, Ordering::SeqCst) + 1;
        // No receiver is fine: nobody is listening, as on an idle PBX.
        let _ = self.inner.commands.send(Command::Call {
            number,
            events: placed.events.clone().into(),
        });
        placed
    }

    /// Closes every session (logged in or not), as a PBX restart would.
    pub fn drop_connections(&self) {
        let _ = self.inner.commands.send(Command::DropConnections);
    }

    /// Events written to sessions so far (after each session's filters).
    pub fn events_sent(&self) -> u64 {
        self.inner.events_sent.load(Ordering::SeqCst)
    }

    /// Logins accepted so far.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::SeqCst)
    }

    /// Logins refused (wrong username or secret) so far.
    pub fn refused_logins(&self) -> u64 {
        self.inner.refused_logins.load(Ordering::SeqCst)
    }

    /// Pings answered so far.
    pub fn pings(&self) -> u64 {
        self.inner.pings.load(Ordering::SeqCst)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    fn calls_placed(&self) -> u64 {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// The events of `call`, ending now, with fresh channel numbers.
    fn call_events(&self, call: &Call) -> PlacedCall {
        let first = self.inner.channels.fetch_add(2, Ordering::SeqCst);
        call_events(call, first, SystemTime::now())
    }
}

/// What every connection shares.
struct Server {
    options: Options,
    secret: Secret,
    started: Instant,
    control: Control,
}

/// Serves manager connections on `listener` until `shutdown` is cancelled, then closes
/// every open session and returns.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_with(listener, options, Control::new(), shutdown).await
}

/// [`serve`], driven by `control` (a test keeps a clone to place calls and drop sessions).
pub async fn serve_with(
    listener: TcpListener,
    options: Options,
    control: Control,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // A few bytes at start-up: read in place.
    let secret = load_secret(&options)?;
    let local = listener.local_addr()?;
    info!(%local, mode = ?options.mode, version = %options.version, username = %options.username,
        "asterisk-ami simulator listening");
    let periodic = (options.event_interval_ms > 0).then(|| {
        tokio::spawn(place_calls_every(
            Duration::from_millis(options.event_interval_ms),
            control.clone(),
            shutdown.clone(),
        ))
    });
    let server = Arc::new(Server {
        options,
        secret,
        started: Instant::now(),
        control,
    });
    let served = accept_loop(
        listener,
        shutdown.clone(),
        "asterisk-ami",
        move |stream, peer| {
            let server = server.clone();
            async move { connection(stream, peer, &server).await }
        },
    )
    .await;
    shutdown.cancel();
    if let Some(task) = periodic {
        let _ = task.await;
    }
    served
}

/// The `--event-interval-ms` calls: 1001 calls 1002, who answers.
async fn place_calls_every(interval: Duration, control: Control, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let call = Call::new(
        "1001",
        "1002",
        CallOutcome::Answered {
            talk: Duration::from_secs(42),
        },
    );
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                control.place_call(&call);
            }
        }
    }
}

fn load_secret(options: &Options) -> io::Result<Secret> {
    if let Some(secret) = &options.secret {
        return Ok(secret.clone());
    }
    let Some(path) = &options.secret_file else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "asterisk-ami simulator needs --secret or --secret-file",
        ));
    };
    let secret = super::read_secret_file(path).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reading --secret-file {}: {why}", path.display()),
        )
    })?;
    Ok(Secret::new(secret))
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, server: &Server) -> io::Result<()> {
    let mode = server.options.mode;
    info!(%peer, ?mode, "AMI connection");
    match mode {
        Mode::NoBanner => Ok(()),
        Mode::Garbage => {
            stream.write_all(GARBAGE).await?;
            info!(%peer, "sent garbage instead of a banner");
            Ok(())
        }
        Mode::Silent => discard(&mut stream).await,
        Mode::Ok | Mode::Slow => Session::new(stream, peer, server).run().await,
    }
}

/// Reads and drops input until the peer closes or goes idle.
async fn discard(stream: &mut TcpStream) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// A session's event filter (the Filter action): literal text that must (or, with `!`,
/// must not) occur in an event's wire form.
#[derive(Debug)]
struct EventFilter {
    exclude: bool,
    text: String,
}

/// Asterisk's evaluation: no filters pass everything; include filters pass only what one
/// of them matches; exclude filters then remove what any of them matches.
fn filters_pass(filters: &[EventFilter], wire: &str) -> bool {
    let mut includes = filters.iter().filter(|f| !f.exclude).peekable();
    let included = includes.peek().is_none() || includes.any(|f| wire.contains(&f.text));
    included && !filters.iter().any(|f| f.exclude && wire.contains(&f.text))
}

/// A Filter value as literal text: `\x` is `x`; unescaped regex syntax is refused.
fn literal_filter(pattern: &str) -> Option<String> {
    let mut text = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            c if REGEX_META.contains(c) => return None,
            c => text.push(c),
        }
    }
    (!text.is_empty()).then_some(text)
}

/// One manager session in ok or slow mode.
struct Session<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    server: &'a Server,
    commands: broadcast::Receiver<Command>,
    logged_in: bool,
    events: bool,
    /// Calls numbered up to this one were placed before the session listened.
    listen_from: u64,
    filters: Vec<EventFilter>,
}

/// What to do after answering an action.
enum After {
    Continue,
    Close,
}

impl<'a> Session<'a> {
    fn new(stream: TcpStream, peer: SocketAddr, server: &'a Server) -> Self {
        Session {
            stream,
            peer,
            server,
            commands: server.control.inner.commands.subscribe(),
            logged_in: false,
            events: server.options.events,
            listen_from: 0,
            filters: Vec::new(),
        }
    }

    fn listening(&self) -> bool {
        self.logged_in && self.events
    }

    /// Applies a change of login or event state; a session that starts listening sees
    /// only calls placed from now on.
    fn set_state(&mut self, logged_in: bool, events: bool) {
        let was = self.listening();
        self.logged_in = logged_in;
        self.events = events;
        if !was && self.listening() {
            self.listen_from = self.server.control.calls_placed();
        }
    }

    async fn run(mut self) -> io::Result<()> {
        let banner = Banner {
            version: self.server.options.version.clone(),
        };
        self.pause().await;
        self.stream.write_all(&banner.encode()).await?;
        let mut decoder = Decoder::new();
        let mut chunk = vec![0u8; 4096];
        loop {
            loop {
                let request = decoder.next_message().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("from {}: {e}", self.peer),
                    )
                })?;
                let Some(request) = request else { break };
                if let After::Close = self.answer(&request).await? {
                    return Ok(());
                }
            }
            let room = decoder.room().min(chunk.len());
            tokio::select! {
                read = tokio::time::timeout(IDLE_TIMEOUT, self.stream.read(&mut chunk[..room])) => {
                    match read {
                        Err(_) => {
                            info!(peer = %self.peer, "closing idle AMI session");
                            return Ok(());
                        }
                        Ok(Ok(0)) => {
                            info!(peer = %self.peer, "AMI client closed the connection");
                            return Ok(());
                        }
                        Ok(Ok(n)) => decoder.feed(chunk.get(..n).unwrap_or_default()),
                        Ok(Err(e)) => return Err(e),
                    }
                }
                command = self.commands.recv() => match command {
                    Ok(Command::Call { number, events }) => {
                        if self.listening() && number > self.listen_from {
                            self.send_events(&events).await?;
                        }
                    }
                    Ok(Command::DropConnections) => {
                        info!(peer = %self.peer, "dropping the AMI session on request");
                        return Ok(());
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(peer = %self.peer, missed,
                            "AMI client fell behind on events; closing its session");
                        return Ok(());
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn answer(&mut self, request: &Message) -> io::Result<After> {
        let action = request.get("Action").unwrap_or_default().to_string();
        let is = |name: &str| action.eq_ignore_ascii_case(name);
        let mut after = After::Continue;
        let mut trailer = Vec::new();
        let reply = if action.is_empty() {
            error(request, "Missing action in request")
        } else if is("Login") {
            let user = request.get("Username").unwrap_or_default();
            let secret = request.get("Secret").unwrap_or_default();
            if user.eq_ignore_ascii_case(&self.server.options.username)
                && secret == self.server.secret.expose()
            {
                let events = self.events || request.get("Events").is_some_and(|v| !is_off(v));
                self.set_state(true, events);
                if self.events {
                    trailer.push(fully_booted(self.server.started.elapsed()));
                }
                info!(peer = %self.peer, user, events = self.events, "Login accepted");
                Control::count(&self.server.control.inner.logins);
                success(request).with("Message", "Authentication accepted")
            } else {
                // Asterisk ends the session after a failed login.
                after = After::Close;
                info!(peer = %self.peer, user, "Login refused: wrong username or secret");
                Control::count(&self.server.control.inner.refused_logins);
                error(request, "Authentication failed")
            }
        } else if is("Logoff") {
            after = After::Close;
            response(request, "Goodbye").with("Message", "Thanks for all the fish.")
        } else if !self.logged_in {
            error(request, "Permission denied")
        } else if is("Ping") {
            Control::count(&self.server.control.inner.pings);
            success(request)
                .with("Ping", "Pong")
                .with("Timestamp", timestamp(SystemTime::now()))
        } else if is("Events") {
            let on = !request.get("EventMask").is_none_or(is_off);
            self.set_state(true, on);
            success(request).with("Events", if on { "On" } else { "Off" })
        } else if is("Filter") {
            self.add_filter(request)
        } else {
            error(request, "Invalid/unknown command")
        };
        // Events that happen to arrive just before the response: clients must match
        // responses by ActionID, not by order.
        let interleaved =
            if self.server.options.interleaved_calls && self.listening() && !is("Login") {
                let call = Call::new(
                    "1001",
                    "1002",
                    CallOutcome::Answered {
                        talk: Duration::from_secs(7),
                    },
                );
                self.server.control.call_events(&call).events
            } else {
                Vec::new()
            };
        if !is("Login") {
            info!(peer = %self.peer, action = %action,
                answer = reply.get("Response").unwrap_or_default(),
                message = reply.get("Message").unwrap_or_default(), "AMI action");
        }
        self.pause().await;
        self.send_events(&interleaved).await?;
        self.send(std::slice::from_ref(&reply)).await?;
        self.send_events(&trailer).await?;
        Ok(after)
    }

    fn add_filter(&mut self, request: &Message) -> Message {
        if self.server.options.read_only_user {
            return error(request, "Permission denied");
        }
        if !request
            .get("Operation")
            .is_some_and(|o| o.eq_ignore_ascii_case("Add"))
        {
            return error(request, "Unknown operation");
        }
        let pattern = request.get("Filter").unwrap_or_default();
        let (exclude, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let Some(text) = literal_filter(pattern) else {
            return error(
                request,
                "Filter not supported: the simulator matches only literal text",
            );
        };
        self.filters.push(EventFilter { exclude, text });
        success(request).with("Message", "Success")
    }

    /// Sends the events this session's filters let through, and counts them.
    async fn send_events(&mut self, events: &[Message]) -> io::Result<()> {
        let mut wire = Vec::new();
        let mut sent = 0u64;
        for event in events {
            let bytes = encode(event)?;
            if filters_pass(&self.filters, &String::from_utf8_lossy(&bytes)) {
                wire.extend_from_slice(&bytes);
                sent += 1;
            }
        }
        if wire.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&wire).await?;
        self.server
            .control
            .inner
            .events_sent
            .fetch_add(sent, Ordering::SeqCst);
        Ok(())
    }

    async fn send(&mut self, messages: &[Message]) -> io::Result<()> {
        let mut wire = Vec::new();
        for message in messages {
            wire.extend_from_slice(&encode(message)?);
        }
        self.stream.write_all(&wire).await
    }

    async fn pause(&self) {
        if self.server.options.mode == Mode::Slow {
            tokio::time::sleep(Duration::from_millis(self.server.options.delay_ms)).await;
        }
    }
}

fn encode(message: &Message) -> io::Result<Vec<u8>> {
    message
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

fn is_off(value: &str) -> bool {
    value.eq_ignore_ascii_case("off")
}

fn response(request: &Message, kind: &str) -> Message {
    let mut reply = Message::new().with("Response", kind);
    if let Some(id) = request.action_id() {
        reply.push("ActionID", id);
    }
    reply
}

fn success(request: &Message) -> Message {
    response(request, "Success")
}

fn error(request: &Message, text: &str) -> Message {
    response(request, "Error").with("Message", text)
}

fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `seconds.microseconds`, the form of AMI timestamps.
fn timestamp(at: SystemTime) -> String {
    let since = since_epoch(at);
    format!("{}.{:06}", since.as_secs(), since.subsec_micros())
}

/// `YYYY-MM-DD HH:MM:SS`, the form of CDR times (in UTC here).
fn cdr_time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string()
}

/// Sent once after login when events are on (Asterisk 1.8+ does the same).
fn fully_booted(uptime: Duration) -> Message {
    let secs = uptime.as_secs().to_string();
    Message::new()
        .with("Event", "FullyBooted")
        .with("Privilege", "system,all")
        .with("Uptime", secs.as_str())
        .with("LastReload", secs.as_str())
        .with("Status", "Fully Booted")
}

/// One channel as events describe it (Asterisk's channel snapshot).
struct Channel {
    name: String,
    uniqueid: String,
    linkedid: String,
    caller_num: String,
    caller_name: String,
    connected_num: String,
    connected_name: String,
    exten: String,
    variables: Vec<(String, String)>,
}

/// Channel states and their descriptions (`ChannelState`, `ChannelStateDesc`).
#[derive(Clone, Copy)]
enum State {
    Down,
    Ring,
    Ringing,
    Up,
}

impl State {
    fn code(self) -> (&'static str, &'static str) {
        match self {
            State::Down => ("0", "Down"),
            State::Ring => ("4", "Ring"),
            State::Ringing => ("5", "Ringing"),
            State::Up => ("6", "Up"),
        }
    }
}

impl Channel {
    /// Appends the snapshot's fields, each key prefixed with `prefix` (`Dest` for the
    /// dialled side of Dial events).
    fn describe(&self, mut event: Message, prefix: &str, state: State) -> Message {
        let (code, desc) = state.code();
        let fields = [
            ("Channel", self.name.as_str()),
            ("ChannelState", code),
            ("ChannelStateDesc", desc),
            ("CallerIDNum", self.caller_num.as_str()),
            ("CallerIDName", self.caller_name.as_str()),
            ("ConnectedLineNum", self.connected_num.as_str()),
            ("ConnectedLineName", self.connected_name.as_str()),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", CONTEXT),
            ("Exten", self.exten.as_str()),
            ("Priority", "1"),
            ("Uniqueid", self.uniqueid.as_str()),
            ("Linkedid", self.linkedid.as_str()),
        ];
        for (key, value) in fields {
            event.push(format!("{prefix}{key}"), value);
        }
        for (name, value) in &self.variables {
            event.push(format!("{prefix}ChanVariable"), format!("{name}={value}"));
        }
        event
    }

    fn event(&self, name: &str, state: State) -> Message {
        self.describe(event(name), "", state)
    }
}

fn event(name: &str) -> Message {
    Message::new()
        .with("Event", name)
        .with("Privilege", "call,all")
}

/// The events of `call` as Asterisk 18 reports a PJSIP call through Dial, ending at `end`;
/// `first_channel` numbers the caller's channel (the callee's is the next number).
pub fn call_events(call: &Call, first_channel: u64, end: SystemTime) -> PlacedCall {
    let (ring, talk) = match call.outcome {
        CallOutcome::Answered { talk } => (RING_ANSWERED, talk),
        CallOutcome::Busy => (Duration::ZERO, Duration::ZERO),
        CallOutcome::NoAnswer => (RING_TIMEOUT, Duration::ZERO),
    };
    let start = end.checked_sub(ring + talk).unwrap_or(UNIX_EPOCH);
    let start_secs = since_epoch(start).as_secs();
    let linkedid = format!("{start_secs}.{first_channel}");
    let caller = Channel {
        name: format!("PJSIP/{}-{first_channel:08x}", call.from),
        uniqueid: linkedid.clone(),
        linkedid: linkedid.clone(),
        caller_num: call.from.clone(),
        caller_name: call.caller_name.clone(),
        connected_num: "<unknown>".into(),
        connected_name: "<unknown>".into(),
        exten: call.to.clone(),
        variables: call.variables.clone(),
    };
    let callee_number = first_channel + 1;
    let callee = Channel {
        name: format!("PJSIP/{}-{callee_number:08x}", call.to),
        uniqueid: format!("{start_secs}.{callee_number}"),
        linkedid: linkedid.clone(),
        caller_num: call.to.clone(),
        caller_name: "<unknown>".into(),
        connected_num: call.from.clone(),
        connected_name: call.caller_name.clone(),
        exten: call.to.clone(),
        variables: call
            .variables
            .iter()
            .map(|(name, _)| (name.clone(), String::new()))
            .collect(),
    };
    let dial = |name: &str, caller_state: State, callee_state: State| {
        let e = caller.describe(event(name), "", caller_state);
        callee.describe(e, "Dest", callee_state)
    };
    let (dial_status, cause, cause_txt, disposition) = match call.outcome {
        CallOutcome::Answered { .. } => ("ANSWER", "16", "Normal Clearing", "ANSWERED"),
        CallOutcome::Busy => ("BUSY", "17", "User busy", "BUSY"),
        CallOutcome::NoAnswer => ("NOANSWER", "19", "User alerting, no answer", "NO ANSWER"),
    };

    let mut events = vec![
        caller.event("Newchannel", State::Ring),
        callee.event("Newchannel", State::Down),
        dial("DialBegin", State::Ring, State::Down).with("DialString", call.to.as_str()),
    ];
    let (caller_end, callee_end) = match call.outcome {
        CallOutcome::Answered { .. } => {
            events.push(callee.event("Newstate", State::Ringing));
            events.push(callee.event("Newstate", State::Up));
            events.push(dial("DialEnd", State::Ring, State::Up).with("DialStatus", dial_status));
            events.push(caller.event("Newstate", State::Up));
            (State::Up, State::Up)
        }
        CallOutcome::Busy => {
            events.push(dial("DialEnd", State::Ring, State::Down).with("DialStatus", dial_status));
            (State::Ring, State::Down)
        }
        CallOutcome::NoAnswer => {
            events.push(callee.event("Newstate", State::Ringing));
            events
                .push(dial("DialEnd", State::Ring, State::Ringing).with("DialStatus", dial_status));
            (State::Ring, State::Ringing)
        }
    };
    for (channel, state) in [(&callee, callee_end), (&caller, caller_end)] {
        events.push(
            channel
                .event("Hangup", state)
                .with("Cause", cause)
                .with("Cause-txt", cause_txt),
        );
    }
    let answered = matches!(call.outcome, CallOutcome::Answered { .. });
    let duration = (ring + talk).as_secs().to_string();
    let billable = talk.as_secs().to_string();
    let answer_time = if answered {
        cdr_time(start + ring)
    } else {
        String::new()
    };
    events.push(
        Message::new()
            .with("Event", "Cdr")
            .with("Privilege", "cdr,all")
            .with("AccountCode", "")
            .with("Source", call.from.as_str())
            .with("Destination", call.to.as_str())
            .with("DestinationContext", CONTEXT)
            .with(
                "CallerID",
                format!("\"{}\" <{}>", call.caller_name, call.from),
            )
            .with("Channel", caller.name.as_str())
            .with("DestinationChannel", callee.name.as_str())
            .with("LastApplication", "Dial")
            .with(
                "LastData",
                format!("PJSIP/{},{}", call.to, RING_TIMEOUT.as_secs()),
            )
            .with("StartTime", cdr_time(start))
            .with("AnswerTime", answer_time)
            .with("EndTime", cdr_time(end))
            .with("Duration", duration)
            .with("BillableSeconds", billable)
            .with("Disposition", disposition)
            .with("AMAFlags", "DOCUMENTATION")
            .with("UniqueID", linkedid.as_str())
            .with("UserField", ""),
    );
    PlacedCall {
        caller_channel: caller.name,
        caller_uniqueid: linkedid,
        callee_channel: callee.name,
        callee_uniqueid: callee.uniqueid,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ami::Kind;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn options() -> Options {
        Cli::try_parse_from(["sim", "--username", "mon", "--secret", "pw"])
            .unwrap()
            .options
    }

    async fn start(
        options: Options,
    ) -> (
        SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, options, shutdown.clone()));
        (addr, shutdown, task)
    }

    /// A raw client: reads the banner, then sends messages and reads answers.
    struct Client {
        stream: TcpStream,
        decoder: Decoder,
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> (Client, Banner) {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut client = Client {
                stream,
                decoder: Decoder::new(),
            };
            loop {
                if let Some(banner) = client.decoder.next_banner().unwrap() {
                    return (client, banner);
                }
                client.fill().await;
            }
        }

        async fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk).await.unwrap();
            self.decoder.feed(&chunk[..n]);
            n
        }

        async fn send(&mut self, message: Message) {
            self.stream
                .write_all(&message.encode().unwrap())
                .await
                .unwrap();
        }

        async fn next(&mut self) -> Option<Message> {
            loop {
                if let Some(m) = self.decoder.next_message().unwrap() {
                    return Some(m);
                }
                if self.fill().await == 0 {
                    return None;
                }
            }
        }

        /// The response with `id`, collecting the events read on the way.
        async fn response(&mut self, id: &str, events: &mut Vec<Message>) -> Message {
            loop {
                let m = self
                    .next()
                    .await
                    .expect("connection closed before the response");
                if m.action_id() == Some(id) {
                    return m;
                }
                events.push(m);
            }
        }
    }

    #[tokio::test]
    async fn answers_like_asterisk() {
        let (addr, shutdown, task) = start(options()).await;
        let (mut c, banner) = Client::connect(addr).await;
        assert_eq!(banner.version, "7.0.3");
        let mut events = Vec::new();

        c.send(Message::action("Ping").with("ActionID", "p0")).await;
        let r = c.response("p0", &mut events).await;
        assert_eq!(r.kind(), Kind::Response("Error"));
        assert_eq!(r.get("Message"), Some("Permission denied"));

        c.send(Message::new().with("ActionID", "none")).await;
        let r = c.response("none", &mut events).await;
        assert_eq!(r.get("Message"), Some("Missing action in request"));

        c.send(
            Message::action("login")
                .with("Username", "MON")
                .with("Secret", "pw")
                .with("Events", "off")
                .with("ActionID", "l1"),
        )
        .await;
        let r = c.response("l1", &mut events).await;
        assert_eq!(r.kind(), Kind::Response("Success"));
        assert_eq!(r.get("Message"), Some("Authentication accepted"));

        c.send(Message::action("Ping").with("ActionID", "p1")).await;
        let r = c.response("p1", &mut events).await;
        assert_eq!(r.get("Ping"), Some("Pong"));
        assert!(r.get("Timestamp").is_some_and(|t| t.contains('.')));

        c.send(Message::action("Originate").with("ActionID", "o1"))
            .await;
        let r = c.response("o1", &mut events).await;
        assert_eq!(r.get("Message"), Some("Invalid/unknown command"));

        c.send(Message::action("Logoff").with("ActionID", "x"))
            .await;
        let r = c.response("x", &mut events).await;
        assert_eq!(r.kind(), Kind::Response("Goodbye"));
        assert!(events.is_empty(), "events with Events: off: {events:?}");
        assert_eq!(
            c.next().await,
            None,
            "the session should close after Logoff"
        );

        shutdown.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn wrong_secret_fails_and_closes() {
        let (addr, _shutdown, _task) = start(options()).await;
        let (mut c, _) = Client::connect(addr).await;
        c.send(
            Message::action("Login")
                .with("Username", "mon")
                .with("Secret", "nope")
                .with("ActionID", "l1"),
        )
        .await;
        let r = c.next().await.unwrap();
        assert_eq!(r.kind(), Kind::Response("Error"));
        assert_eq!(r.get("Message"), Some("Authentication failed"));
        assert_eq!(c.next().await, None);
    }

    #[tokio::test]
    async fn events_on_interleaves_realistic_events() {
        let mut o = options();
        o.event_interval_ms = 20;
        let (addr, _shutdown, _task) = start(o).await;
        let (mut c, _) = Client::connect(addr).await;
        let mut events = Vec::new();
        c.login("on", &mut events).await;
        // FullyBooted follows the login response, then periodic calls start.
        let call_len = placed(Call::new("1", "2", answered(1))).events.len();
        while events.len() < 1 + call_len {
            events.push(c.next().await.unwrap());
        }
        assert_eq!(events[0].kind(), Kind::Event("FullyBooted"));
        assert_eq!(events[1].kind(), Kind::Event("Newchannel"));
        let call = &events[1..];
        assert_eq!(call.last().unwrap().kind(), Kind::Event("Cdr"));
        let linkedid = call[0].get("Uniqueid");
        assert!(call[..call_len - 1]
            .iter()
            .all(|e| e.get("Linkedid") == linkedid));
        assert_eq!(call[call_len - 2].get("Cause-txt"), Some("Normal Clearing"));

        // Before every later response comes a call too.
        events.clear();
        c.send(Message::action("Ping").with("ActionID", "p1")).await;
        c.response("p1", &mut events).await;
        let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
        assert!(
            kinds.ends_with(&[Kind::Event("Hangup"), Kind::Event("Cdr")]),
            "{kinds:?}"
        );
    }

    #[tokio::test]
    async fn secret_file_is_read_and_cli_requires_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ami.secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let o = Cli::try_parse_from(["sim", "--secret-file", path.to_str().unwrap()])
            .unwrap()
            .options;
        assert_eq!(load_secret(&o).unwrap().expose(), "from-file");
        assert!(Cli::try_parse_from(["sim"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--secret", "a", "--secret-file", "b"]).is_err());
        let shown = format!("{:?}", options());
        assert!(!shown.contains("\"pw\""), "{shown}");

        let missing = Cli::try_parse_from(["sim", "--secret-file", "/nonexistent/ami"])
            .unwrap()
            .options;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(listener, missing, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ami"), "{err}");
    }

    #[tokio::test]
    async fn oversized_request_closes_the_session() {
        let (addr, _shutdown, _task) = start(options()).await;
        let (mut c, _) = Client::connect(addr).await;
        let line = vec![b'x'; 70 * 1024];
        // The server may close before reading all of it; ignore the write error.
        let _ = c.stream.write_all(b"Action: ").await;
        let _ = c.stream.write_all(&line).await;
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), c.stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the simulator kept an oversized session open");
    }

    fn answered(secs: u64) -> CallOutcome {
        CallOutcome::Answered {
            talk: Duration::from_secs(secs),
        }
    }

    /// `call` as channels 10 and 11, ending at a fixed time.
    fn placed(call: Call) -> PlacedCall {
        call_events(&call, 10, UNIX_EPOCH + Duration::from_secs(1_700_000_100))
    }

    /// The events' names (`-` for a message that is not an event).
    fn names(events: &[Message]) -> Vec<&str> {
        events
            .iter()
            .map(|e| match e.kind() {
                Kind::Event(name) => name,
                _ => "-",
            })
            .collect()
    }

    #[test]
    fn an_answered_call_is_the_sequence_asterisk_reports() {
        let call = placed(Call::new("1001", "1002", answered(57)).with_variable("DEPT", "sales"));
        assert_eq!(call.caller_channel, "PJSIP/1001-0000000a");
        assert_eq!(call.callee_channel, "PJSIP/1002-0000000b");
        // Started 3 s of ringing and 57 s of talk before the end.
        assert_eq!(call.caller_uniqueid, "1700000040.10");
        assert_eq!(call.callee_uniqueid, "1700000040.11");
        assert_eq!(
            names(&call.events),
            [
                "Newchannel",
                "Newchannel",
                "DialBegin",
                "Newstate",
                "Newstate",
                "DialEnd",
                "Newstate",
                "Hangup",
                "Hangup",
                "Cdr"
            ]
        );
        let e = &call.events;
        assert_eq!(e[0].get("Channel"), Some("PJSIP/1001-0000000a"));
        assert_eq!(e[0].get("ChannelStateDesc"), Some("Ring"));
        assert_eq!(e[0].get("Exten"), Some("1002"));
        assert_eq!(e[0].get("ChanVariable"), Some("DEPT=sales"));
        assert_eq!(e[1].get("ConnectedLineNum"), Some("1001"));
        assert_eq!(e[1].get("ChanVariable"), Some("DEPT="));
        assert_eq!(e[1].get("Linkedid"), Some("1700000040.10"));
        assert_eq!(e[2].get("DestChannel"), Some("PJSIP/1002-0000000b"));
        assert_eq!(e[2].get("DestChanVariable"), Some("DEPT="));
        assert_eq!(e[2].get("DialString"), Some("1002"));
        assert_eq!(e[3].get("ChannelStateDesc"), Some("Ringing"));
        assert_eq!(e[5].get("DialStatus"), Some("ANSWER"));
        assert_eq!(e[5].get("DestChannelState"), Some("6"));
        assert_eq!(e[7].get("Channel"), Some("PJSIP/1002-0000000b"));
        assert_eq!(e[8].get("Cause"), Some("16"));
        assert_eq!(e[8].get("Cause-txt"), Some("Normal Clearing"));
        let cdr = &e[9];
        assert_eq!(cdr.get("Privilege"), Some("cdr,all"));
        assert_eq!(cdr.get("CallerID"), Some("\"Extension 1001\" <1001>"));
        assert_eq!(cdr.get("StartTime"), Some("2023-11-14 22:14:00"));
        assert_eq!(cdr.get("AnswerTime"), Some("2023-11-14 22:14:03"));
        assert_eq!(cdr.get("EndTime"), Some("2023-11-14 22:15:00"));
        assert_eq!(cdr.get("Duration"), Some("60"));
        assert_eq!(cdr.get("BillableSeconds"), Some("57"));
        assert_eq!(cdr.get("Disposition"), Some("ANSWERED"));
        assert_eq!(cdr.get("UniqueID"), Some("1700000040.10"));
    }

    #[test]
    fn busy_and_unanswered_calls_end_as_asterisk_reports_them() {
        let busy = placed(Call::new("1001", "1002", CallOutcome::Busy));
        assert_eq!(
            names(&busy.events),
            [
                "Newchannel",
                "Newchannel",
                "DialBegin",
                "DialEnd",
                "Hangup",
                "Hangup",
                "Cdr"
            ]
        );
        assert_eq!(busy.events[3].get("DialStatus"), Some("BUSY"));
        assert_eq!(busy.events[5].get("Cause-txt"), Some("User busy"));
        assert_eq!(busy.events[6].get("Disposition"), Some("BUSY"));
        assert_eq!(busy.events[6].get("AnswerTime"), Some(""));
        assert_eq!(busy.events[6].get("Duration"), Some("0"));

        let missed = placed(Call::new("1001", "1002", CallOutcome::NoAnswer));
        let dial_end = missed
            .events
            .iter()
            .find(|e| e.kind() == Kind::Event("DialEnd"));
        assert_eq!(dial_end.unwrap().get("DialStatus"), Some("NOANSWER"));
        let cdr = missed.events.last().unwrap();
        assert_eq!(cdr.get("Disposition"), Some("NO ANSWER"));
        assert_eq!(cdr.get("Duration"), Some("30"));
        assert_eq!(cdr.get("BillableSeconds"), Some("0"));
    }

    #[test]
    fn call_events_encode() {
        for outcome in [answered(7), CallOutcome::Busy, CallOutcome::NoAnswer] {
            let call = Call::new("1001", "1002", outcome).with_variable("A", "b c");
            for m in call_events(&call, 7, SystemTime::now()).events {
                let wire = m.encode().unwrap();
                let (back, _) = crate::protocol::ami::decode_message(&wire)
                    .unwrap()
                    .unwrap();
                assert_eq!(back, m);
            }
        }
    }

    fn quiet_options() -> Options {
        let mut o = options();
        o.event_interval_ms = 0;
        o.interleaved_calls = false;
        o
    }

    async fn start_controlled(options: Options) -> (SocketAddr, Control, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let control = Control::new();
        tokio::spawn(serve_with(
            listener,
            options,
            control.clone(),
            shutdown.clone(),
        ));
        (addr, control, shutdown)
    }

    impl Client {
        async fn login(&mut self, events: &str, skipped: &mut Vec<Message>) {
            self.send(
                Message::action("Login")
                    .with("Username", "mon")
                    .with("Secret", "pw")
                    .with("Events", events)
                    .with("ActionID", "login"),
            )
            .await;
            let r = self.response("login", skipped).await;
            assert_eq!(r.kind(), Kind::Response("Success"), "{r:?}");
        }

        /// A client logged in with `Events: <events>`, and the messages read before the
        /// login response.
        async fn logged_in(addr: SocketAddr, events: &str) -> (Client, Vec<Message>) {
            let (mut c, _) = Client::connect(addr).await;
            let mut skipped = Vec::new();
            c.login(events, &mut skipped).await;
            (c, skipped)
        }

        /// Sends a Filter action and returns its response.
        async fn add_filter(&mut self, filter: &str, skipped: &mut Vec<Message>) -> Message {
            self.send(
                Message::action("Filter")
                    .with("Operation", "Add")
                    .with("Filter", filter)
                    .with("ActionID", filter),
            )
            .await;
            self.response(filter, skipped).await
        }

        /// The next `n` messages.
        async fn take(&mut self, n: usize) -> Vec<Message> {
            let mut messages = Vec::new();
            while messages.len() < n {
                messages.push(self.next().await.expect("closed early"));
            }
            messages
        }
    }

    #[tokio::test]
    async fn a_placed_call_reaches_every_listening_session_only() {
        let (addr, control, _shutdown) = start_controlled(quiet_options()).await;
        let (mut listener_a, _) = Client::connect(addr).await;
        let (mut listener_b, _) = Client::connect(addr).await;
        let (mut deaf, _) = Client::connect(addr).await;
        let mut skipped = Vec::new();
        listener_a.login("on", &mut skipped).await;
        listener_b.login("on", &mut skipped).await;
        deaf.login("off", &mut skipped).await;
        assert!(skipped.is_empty(), "{skipped:?}");

        let call = control.place_call(&Call::new("2001", "2002", CallOutcome::Busy));
        for client in [&mut listener_a, &mut listener_b] {
            let booted = client.take(1).await;
            assert_eq!(names(&booted), ["FullyBooted"]);
            assert_eq!(client.take(call.events.len()).await, call.events);
        }
        // The deaf session's next message is the answer to its Ping: no events came.
        deaf.send(Message::action("Ping").with("ActionID", "p"))
            .await;
        assert_eq!(deaf.take(1).await[0].action_id(), Some("p"));
        assert_eq!(control.events_sent(), 2 * (1 + call.events.len() as u64));
    }

    #[tokio::test]
    async fn the_events_action_starts_and_stops_events() {
        let (addr, control, _shutdown) = start_controlled(quiet_options()).await;
        let (mut c, mut skipped) = Client::logged_in(addr, "off").await;
        c.send(
            Message::action("Events")
                .with("EventMask", "on")
                .with("ActionID", "e1"),
        )
        .await;
        let r = c.response("e1", &mut skipped).await;
        assert_eq!(r.get("Events"), Some("On"));
        let call = control.place_call(&Call::new("1", "2", answered(1)));
        assert_eq!(c.take(call.events.len()).await, call.events);

        c.send(
            Message::action("Events")
                .with("EventMask", "off")
                .with("ActionID", "e2"),
        )
        .await;
        assert_eq!(
            c.response("e2", &mut skipped).await.get("Events"),
            Some("Off")
        );
        control.place_call(&Call::new("1", "2", answered(1)));
        c.send(Message::action("Ping").with("ActionID", "p")).await;
        assert_eq!(c.take(1).await[0].action_id(), Some("p"));
        assert!(skipped.is_empty(), "{skipped:?}");
    }

    #[tokio::test]
    async fn drop_connections_closes_every_session() {
        let (addr, control, _shutdown) = start_controlled(quiet_options()).await;
        let (mut logged_in, _) = Client::connect(addr).await;
        let (mut anonymous, _) = Client::connect(addr).await;
        let mut skipped = Vec::new();
        logged_in.login("on", &mut skipped).await;
        control.drop_connections();
        // FullyBooted may still be read before the end of the stream.
        while let Some(m) = logged_in.next().await {
            assert_eq!(m.kind(), Kind::Event("FullyBooted"));
        }
        assert_eq!(anonymous.next().await, None);
        // The simulator still accepts new sessions.
        let (_again, banner) = Client::connect(addr).await;
        assert_eq!(banner.version, "7.0.3");
    }

    #[tokio::test]
    async fn filters_select_events_as_asterisk_does() {
        let (addr, control, _shutdown) = start_controlled(quiet_options()).await;
        let (mut c, mut skipped) = Client::logged_in(addr, "on").await;
        for filter in ["Event: Hangup", "Event: Cdr", "!CallerIDNum: 2002"] {
            let r = c.add_filter(filter, &mut skipped).await;
            assert_eq!(r.kind(), Kind::Response("Success"), "{filter}: {r:?}");
        }
        let r = c.add_filter("Event: (Dial|Hangup).*", &mut skipped).await;
        assert_eq!(r.kind(), Kind::Response("Error"));
        assert_eq!(names(&skipped), ["FullyBooted"]);

        let call = control.place_call(&Call::new("2001", "2002", answered(5)));
        // The Hangup of 2002's channel is excluded; the caller's Hangup and the Cdr pass.
        let got = c.take(2).await;
        assert_eq!(got[0], call.events[8]);
        assert_eq!(got[1], call.events[9]);
    }

    #[tokio::test]
    async fn a_read_only_user_may_not_add_filters() {
        let mut o = quiet_options();
        o.read_only_user = true;
        let (addr, _control, _shutdown) = start_controlled(o).await;
        let (mut c, mut skipped) = Client::logged_in(addr, "on").await;
        let r = c.add_filter("Event: Cdr", &mut skipped).await;
        assert_eq!(r.get("Message"), Some("Permission denied"));
    }

    #[test]
    fn literal_filters_unescape_and_refuse_regex_syntax() {
        assert_eq!(
            literal_filter("Event: Hangup").as_deref(),
            Some("Event: Hangup")
        );
        assert_eq!(
            literal_filter(r"Channel: PJSIP/1\.2").as_deref(),
            Some("Channel: PJSIP/1.2")
        );
        assert_eq!(literal_filter("Event: .*"), None);
        assert_eq!(literal_filter("trailing\\"), None);
        assert_eq!(literal_filter(""), None);
    }

    #[test]
    fn filter_evaluation_follows_asterisk() {
        let f = |exclude, text: &str| EventFilter {
            exclude,
            text: text.into(),
        };
        assert!(filters_pass(&[], "Event: A"));
        assert!(filters_pass(&[f(false, "Event: A")], "Event: A\r\n"));
        assert!(!filters_pass(&[f(false, "Event: A")], "Event: B\r\n"));
        assert!(!filters_pass(&[f(true, "Event: A")], "Event: A\r\n"));
        assert!(filters_pass(&[f(true, "Event: A")], "Event: B\r\n"));
        let both = [f(false, "Event: A"), f(true, "X: 1")];
        assert!(filters_pass(&both, "Event: A\r\nX: 2"));
        assert!(!filters_pass(&both, "Event: A\r\nX: 1"));
        assert!(!filters_pass(&both, "Event: B\r\nX: 2"));
    }
}
