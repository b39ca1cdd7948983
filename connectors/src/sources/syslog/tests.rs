//! The listeners on loopback, fed by the real `logger` from util-linux and by raw sockets.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use siteward_config::{SyslogSource, WhenFull};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::sources::ConnectorCounters;
use crate::spool::Spool;
use crate::test_util::poll_until;

const LOGGER: &str = "/usr/bin/logger";
const CONNECTOR: &str = "site-logs";
/// Bound on every wait: generous, since the machine is shared.
const PATIENCE: Duration = Duration::from_secs(20);

struct Harness {
    _dir: tempfile::TempDir,
    spool: Arc<Spool>,
    counters: Arc<ConnectorCounters>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    udp: SocketAddr,
    tcp: SocketAddr,
}

async fn harness(max_message_bytes: usize, spool_bytes: u64, limits: TcpLimits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(&dir.path().join("spool.redb"), spool_bytes).unwrap());
    let counters = Arc::new(ConnectorCounters::default());
    let sink = Sink::new(
        CONNECTOR,
        WhenFull::Block,
        spool.clone(),
        Arc::new(Notify::new()),
        counters.clone(),
    );
    let config = SyslogSource {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        max_message_bytes,
    };
    let listeners = Listeners::bind(&config, CONNECTOR).await.unwrap();
    let udp = listeners.udp_addr().unwrap();
    let tcp = listeners.tcp_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = listeners.serve(sink, cancel.clone(), limits);
    Harness {
        _dir: dir,
        spool,
        counters,
        cancel,
        task,
        udp,
        tcp,
    }
}

async fn default_harness() -> Harness {
    harness(8192, 1 << 20, TcpLimits::default()).await
}

impl Harness {
    fn stored(&self) -> Vec<Value> {
        self.spool
            .peek(None, 10_000, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, event)| {
                assert_eq!(event.connector, CONNECTOR);
                assert_eq!(event.kind, EVENT_KIND);
                serde_json::from_slice(&event.payload).unwrap()
            })
            .collect()
    }

    /// Waits (bounded) until at least `n` events are stored, and returns them all.
    async fn wait_for_events(&self, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} stored events"), || self.stored().len() >= n).await;
        self.stored()
    }

    fn rejected(&self) -> u64 {
        self.counters.rejected.load(Ordering::Relaxed)
    }

    fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }

    /// Cancels and checks that the listeners stop promptly.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the syslog task stops once cancelled")
            .unwrap();
    }
}

async fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        poll_until(PATIENCE, condition).await,
        "timed out waiting for {what}"
    );
}

/// Runs the real logger, sending to `server`, to its exit; it is killed by PID if the test
/// gives up on it.
async fn logger(server: SocketAddr, args: &[&str]) {
    let mut command = std::process::Command::new(LOGGER);
    command
        .args([
            "-n",
            &server.ip().to_string(),
            "-P",
            &server.port().to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("starting /usr/bin/logger (util-linux)");
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("logger exits")
        .unwrap();
    assert!(
        output.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn assert_priority(event: &Value, facility: (u8, &str), severity: (u8, &str)) {
    assert_eq!(
        (&event["facility"], &event["severity"]),
        (
            &serde_json::json!({"code": facility.0, "name": facility.1}),
            &serde_json::json!({"code": severity.0, "name": severity.1}),
        ),
    );
}

fn assert_from_loopback(event: &Value) {
    let sender: SocketAddr = event["sender"].as_str().unwrap().parse().unwrap();
    assert!(sender.ip().is_loopback(), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_rfc5424_over_udp() {
    let h = default_harness().await;
    logger(
        h.udp,
        &[
            "-d",
            "--rfc5424",
            "-t",
            "myapp",
            "--msgid",
            "ID7",
            "--sd-id",
            "zoo@123",
            "--sd-param",
            "tiger=\"hungry\"",
            "--sd-param",
            "say=\"a \\\"quote\\\"\"",
            "hello over udp",
        ],
    )
    .await;
    let events = h.wait_for_events(1).await;
    let event = &events[0];
    assert_eq!(event["format"], "rfc5424");
    assert_priority(event, (1, "user"), (5, "notice"));
    assert_eq!(event["app_name"], "myapp");
    assert_eq!(event["msgid"], "ID7");
    assert_eq!(event["procid"], Value::Null);
    assert_eq!(event["structured_data"]["zoo@123"]["tiger"], "hungry");
    assert_eq!(event["structured_data"]["zoo@123"]["say"], "a \"quote\"");
    // logger adds its own element about the clock.
    assert!(
        event["structured_data"]["timeQuality"].is_object(),
        "{event}"
    );
    assert_eq!(event["message"], "hello over udp");
    assert!(event["hostname"].is_string(), "{event}");
    assert!(
        event["timestamp"].as_str().unwrap().contains('T'),
        "{event}"
    );
    assert_from_loopback(event);
    assert_eq!(h.rejected(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_rfc3164_over_udp() {
    let h = default_harness().await;
    logger(
        h.udp,
        &[
            "-d",
            "--rfc3164",
            "-p",
            "local3.warning",
            "-t",
            "myapp",
            "-i",
            "old style",
        ],
    )
    .await;
    let events = h.wait_for_events(1).await;
    let event = &events[0];
    assert_eq!(event["format"], "rfc3164");
    assert_priority(event, (19, "local3"), (4, "warning"));
    assert_eq!(event["app_name"], "myapp");
    // -i: logger's PID as tag[pid].
    assert!(
        event["procid"].as_str().unwrap().parse::<u32>().is_ok(),
        "{event}"
    );
    assert!(event["hostname"].is_string(), "{event}");
    assert_eq!(event["message"], "old style");
    assert_eq!(event["structured_data"], serde_json::json!({}));
    assert_from_loopback(event);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_rfc5424_over_tcp_with_octet_counting() {
    let h = default_harness().await;
    logger(
        h.tcp,
        &[
            "-T",
            "--octet-count",
            "--rfc5424",
            "-t",
            "myapp",
            "--sd-id",
            "zoo@123",
            "--sd-param",
            "tiger=\"hungry\"",
            "message over tcp",
        ],
    )
    .await;
    let events = h.wait_for_events(1).await;
    assert_eq!(events[0]["format"], "rfc5424");
    assert_eq!(events[0]["app_name"], "myapp");
    assert_eq!(events[0]["structured_data"]["zoo@123"]["tiger"], "hungry");
    assert_eq!(events[0]["message"], "message over tcp");
    assert_from_loopback(&events[0]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_rfc3164_over_tcp_with_newlines_keeps_the_order() {
    let h = default_harness().await;
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines");
    std::fs::write(&lines, "first line\nsecond line\nthird line\n").unwrap();
    logger(
        h.tcp,
        &[
            "-T",
            "--rfc3164",
            "-t",
            "batch",
            "-f",
            lines.to_str().unwrap(),
        ],
    )
    .await;
    let events = h.wait_for_events(3).await;
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["first line", "second line", "third line"]);
    for event in &events {
        assert_eq!(event["format"], "rfc3164");
        assert_eq!(event["app_name"], "batch");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_counted_and_nothing_is_stored() {
    let h = harness(100, 1 << 20, TcpLimits::default()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let oversized = format!("<13>1 - - - - - {}", "x".repeat(100));
    for bad in [
        &b"no pri at all"[..],
        b"<192>1 - - - - - -",
        b"<13>1 - - - - - [unterminated",
        b"<13>1 - - - - - - \xEF\xBB\xBF\xFF",
        b"",
        oversized.as_bytes(),
    ] {
        socket.send_to(bad, h.udp).await.unwrap();
    }
    wait_until("6 rejected datagrams", || h.rejected() >= 6).await;
    assert_eq!(h.rejected(), 6);
    assert!(h.stored().is_empty());
    // The listener is still there for good messages.
    socket
        .send_to(b"<13>1 - - - - - - fine", h.udp)
        .await
        .unwrap();
    let events = h.wait_for_events(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["message"], "fine");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newline_framing_over_tcp() {
    let h = default_harness().await;
    let mut stream = TcpStream::connect(h.tcp).await.unwrap();
    for piece in [
        &b"<13>1 - - - - - - one\r"[..],
        b"\n<14>Jan  1 00:00:00 host app[1]: two\n\n",
        b"<15>1 - - - - - - three\0",
        b"not syslog\n",
        b"17 <13>1 - - - - - -",
        b"<13>last, without a line end",
    ] {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
    }
    stream.shutdown().await.unwrap();
    let events = h.wait_for_events(5).await;
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["one", "two", "three", "", "last, without a line end"]
    );
    assert_eq!(events[1]["app_name"], "app");
    assert_eq!(h.rejected(), 1);
    h.stop().await;
}

/// Reads until the listener closes the connection (EOF, or a reset since we sent bytes it
/// did not read); panics if it stays open.
async fn assert_closed_by_listener(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("the listener closes the connection");
    match read {
        Ok(0) => {}
        Ok(n) => panic!("the listener sent {n} bytes"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_frame_over_the_limit_closes_the_connection() {
    let h = harness(100, 1 << 20, TcpLimits::default()).await;
    let mut stream = TcpStream::connect(h.tcp).await.unwrap();
    stream
        .write_all(b"24 <13>1 - - - - - - before101 <13>1 - - - - - - ")
        .await
        .unwrap();
    assert_closed_by_listener(&mut stream).await;
    let events = h.wait_for_events(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["message"], "before");
    assert_eq!(h.rejected(), 1);
    // Other connections are served.
    let mut other = TcpStream::connect(h.tcp).await.unwrap();
    other.write_all(b"<13>1 - - - - - - after\n").await.unwrap();
    let events = h.wait_for_events(2).await;
    assert_eq!(events[1]["message"], "after");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_over_the_cap_are_closed() {
    let limits = TcpLimits {
        max_connections: 1,
        ..TcpLimits::default()
    };
    let h = harness(1000, 1 << 20, limits).await;
    let mut first = TcpStream::connect(h.tcp).await.unwrap();
    first.write_all(b"<13>1 - - - - - - in\n").await.unwrap();
    h.wait_for_events(1).await;
    let mut second = TcpStream::connect(h.tcp).await.unwrap();
    assert_closed_by_listener(&mut second).await;
    // The first is still served, and its slot is free once it closes.
    first
        .write_all(b"<13>1 - - - - - - still in\n")
        .await
        .unwrap();
    h.wait_for_events(2).await;
    first.shutdown().await.unwrap();
    assert_closed_by_listener(&mut first).await;
    let mut third = TcpStream::connect(h.tcp).await.unwrap();
    third.write_all(b"<13>1 - - - - - - third\n").await.unwrap();
    let events = h.wait_for_events(3).await;
    assert_eq!(events[2]["message"], "third");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_are_closed() {
    let limits = TcpLimits {
        idle_timeout: Duration::from_millis(200),
        ..TcpLimits::default()
    };
    let h = harness(1000, 1 << 20, limits).await;
    let mut stream = TcpStream::connect(h.tcp).await.unwrap();
    stream.write_all(b"<13>1 - - - - - - hi\n").await.unwrap();
    assert_closed_by_listener(&mut stream).await;
    assert_eq!(h.wait_for_events(1).await.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_udp_and_pauses_tcp_until_there_is_room() {
    let h = harness(1000, 2048, TcpLimits::default()).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Fill the spool over UDP, one datagram at a time, until it refuses one.
    let mut sent = 0;
    while h.refused() == 0 {
        assert!(sent < 100, "the spool never filled");
        let datagram = format!("<13>1 - - - - - - udp {sent}");
        socket.send_to(datagram.as_bytes(), h.udp).await.unwrap();
        sent += 1;
        wait_until("the datagram stored or refused", || {
            h.stored().len() as u64 + h.refused() >= sent
        })
        .await;
    }
    let stored_udp = h.stored().len();
    let refused_udp = format!("udp {}", sent - 1);
    // TCP: the message waits instead of being dropped.
    let mut stream = TcpStream::connect(h.tcp).await.unwrap();
    stream.write_all(b"<13>1 - - - - - - held\n").await.unwrap();
    wait_until("the TCP message refused once", || h.refused() >= 2).await;
    assert!(h.stored().iter().all(|e| e["message"] != "held"));
    // Room again: the held message goes in; the refused datagram is gone for good.
    let sequences = h
        .spool
        .peek(None, 10_000, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(sequence, _)| sequence)
        .collect();
    h.spool.remove(sequences).await.unwrap();
    let events = h.wait_for_events(1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["message"], "held");
    assert!(stored_udp >= 1);
    assert!(events.iter().all(|e| e["message"] != refused_udp.as_str()));
    // The dropped datagram and the held message, each once however often it was retried.
    assert_eq!(h.refused(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reports_a_port_in_use_and_a_source_without_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(&dir.path().join("spool.redb"), 1 << 20).unwrap());
    let sink = Sink::new(
        CONNECTOR,
        WhenFull::Block,
        spool,
        Arc::new(Notify::new()),
        Arc::new(ConnectorCounters::default()),
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = SyslogSource {
        udp: None,
        tcp: Some(taken.local_addr().unwrap()),
        max_message_bytes: 1000,
    };
    let err = start(&config, sink.clone(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "binding the syslog TCP listener of connector {CONNECTOR} to 127.0.0.1:"
        )),
        "{err}"
    );
    assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
    let none = SyslogSource {
        udp: None,
        tcp: None,
        max_message_bytes: 1000,
    };
    let err = start(&none, sink, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("neither a UDP nor a TCP listener"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arriving_together_are_stored_in_order() {
    let h = default_harness().await;
    let mut stream = TcpStream::connect(h.tcp).await.unwrap();
    let mut wire = Vec::new();
    for n in 0..500 {
        wire.extend_from_slice(format!("<13>1 - - - - - - {n}\n").as_bytes());
    }
    stream.write_all(&wire).await.unwrap();
    let events = h.wait_for_events(500).await;
    let messages: Vec<String> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..500).map(|n| n.to_string()).collect();
    assert_eq!(messages, expected);
    h.stop().await;
}
