//! TCP relays through the real daemon: bytes both ways, the allow list, counters, and a
//! reload that adds and removes relays. (Throughput against rathole: bench/relay/run.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use siteward_tests::{promtool_check, Daemon, STATE_TIMEOUT};
use socket2::{Domain, Socket, Type};

/// An echo server on 127.0.0.1 (one thread per connection), for as long as the test runs.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Connects to `to` from source address `from` (any port).
fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let source: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&source.into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn relay(name: &str, target: SocketAddr, allow: &str) -> String {
    format!(
        "[[relays]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\ntarget = \"{target}\"\nallow = [\"{allow}\"]\n"
    )
}

#[test]
fn a_relay_carries_bytes_both_ways_for_allowed_sources_only() {
    let target = echo_server();
    let daemon = Daemon::start(&relay("ebs-db", target, "127.0.0.2/32"));
    let addr = daemon.listener("relay ebs-db");

    // Allowed: bytes go to the echo server and come back, byte-exact.
    let mut allowed = connect_from("127.0.0.2", addr).expect("connecting from 127.0.0.2");
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut stream = allowed.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || stream.write_all(&data).unwrap())
    };
    let mut echoed = vec![0u8; data.len()];
    allowed
        .read_exact(&mut echoed)
        .expect("reading the echo through the relay");
    writer.join().unwrap();
    assert_eq!(echoed, data);

    // Not allowed: closed without a byte.
    let mut refused = connect_from("127.0.0.1", addr).expect("the TCP handshake itself succeeds");
    let _ = refused.write_all(b"SELECT 1");
    let mut buf = [0u8; 16];
    let read = refused.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a refused source got {read:?}"
    );

    drop(allowed);
    let scrape = daemon.wait_until(STATE_TIMEOUT, "the relay's counters settle", || {
        let scrape = daemon.scrape();
        let labels = [("relay", "ebs-db")];
        (scrape.get("siteward_relay_active_connections", &labels) == Some(0.0)
            && scrape.get("siteward_relay_refused_total", &labels) == Some(1.0))
        .then_some(scrape)
    });
    let labels = [("relay", "ebs-db")];
    assert_eq!(
        scrape.get("siteward_relay_connections_total", &labels),
        Some(1.0)
    );
    assert_eq!(
        scrape.get("siteward_relay_bytes_to_target_total", &labels),
        Some(data.len() as f64)
    );
    assert_eq!(
        scrape.get("siteward_relay_bytes_from_target_total", &labels),
        Some(data.len() as f64)
    );
    assert_eq!(scrape.get("siteward_relay_up", &labels), Some(1.0));
    let (valid, report) = promtool_check(&daemon.scrape_raw().text());
    assert!(valid, "promtool check metrics: {report}");
}

#[test]
fn a_reload_adds_and_removes_relays() {
    let target = echo_server();
    let daemon = Daemon::start(&relay("first", target, "127.0.0.0/8"));
    let first = daemon.listener("relay first");
    daemon.write_checks(&relay("second", target, "127.0.0.0/8"));
    daemon.sighup();
    daemon.wait_for_log(STATE_TIMEOUT, |v| {
        v["message"] == "relays applied"
            && v["added"] == "[\"second\"]"
            && v["removed"] == "[\"first\"]"
    });
    let second = daemon.listener("relay second");
    let mut stream = connect_from("127.0.0.1", second).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    // The removed relay's port is closed.
    assert!(TcpStream::connect_timeout(&first, Duration::from_secs(2)).is_err());
}
