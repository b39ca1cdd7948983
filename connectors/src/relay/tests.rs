use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use siteward_config::{Host, HostPort, Placement, Relay};
use siteward_netstack::SocketPlacement;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pump::{self, Activity, Meter};
use super::{allowed, start, RelayCounters};
use crate::net::Resolver;
use crate::test_util::poll_until;

/// Bound on every wait in these tests; reached only when something is broken.
const WAIT: Duration = Duration::from_secs(20);

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A port nothing listens on (bound, then released).
async fn free_port() -> u16 {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

fn relay_config(target_port: u16, listen_port: u16) -> Relay {
    Relay {
        name: "r".into(),
        listen: SocketAddr::new(LOCALHOST, listen_port),
        target: HostPort {
            host: Host::Ip(LOCALHOST),
            port: target_port,
        },
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        max_connections: 100,
        idle_timeout: Duration::from_secs(600),
        placement: Placement::default(),
    }
}

/// A relay started on a free port; stopped when dropped.
struct RunningRelay {
    addr: SocketAddr,
    counters: Arc<RelayCounters>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningRelay {
    async fn start(mut config: Relay) -> RunningRelay {
        config.listen.set_port(free_port().await);
        let counters = Arc::new(RelayCounters::default());
        let cancel = CancellationToken::new();
        let resolver = Resolver::from_system().unwrap();
        let task = start(&config, resolver, counters.clone(), cancel.clone())
            .await
            .unwrap();
        RunningRelay {
            addr: config.listen,
            counters,
            cancel,
            task: Some(task),
        }
    }

    fn count(&self, counter: fn(&RelayCounters) -> &AtomicU64) -> u64 {
        counter(&self.counters).load(Ordering::Relaxed)
    }

    async fn wait_count(&self, what: &str, counter: fn(&RelayCounters) -> &AtomicU64, want: u64) {
        wait_until(what, || self.count(counter) == want).await;
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A client connection from `source` (another loopback address).
    async fn connect_from(&self, source: IpAddr) -> TcpStream {
        let placement = Placement {
            source: Some(source),
            interface: None,
        };
        placement
            .tcp_socket(self.addr)
            .unwrap()
            .connect(self.addr)
            .await
            .unwrap()
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A target server running `handler` on every connection; counts what it accepted.
struct Target {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Target {
    async fn start<F, Fut>(handler: F) -> Target
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(handler(stream));
            }
        });
        Target {
            port,
            accepted,
            task,
        }
    }

    /// Sends back what it receives, and ends when the client does.
    async fn echo() -> Target {
        Target::start(|mut stream| async move {
            let (mut read, mut write) = stream.split();
            if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                let _ = write.shutdown().await;
            }
        })
        .await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bounded poll of a condition the relay reaches on its own (a counter, a closed socket).
async fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(poll_until(WAIT, done).await, "{what}: not within {WAIT:?}");
}

/// The relay closed `stream` (an end of stream, or a reset when bytes were unread).
async fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 16];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Err(_) => panic!("{what}: still open after {WAIT:?}"),
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: got {n} bytes instead of a close"),
    }
}

/// One round trip through an echoing target.
async fn assert_echoes(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("an echo")
        .unwrap();
    assert_eq!(back, message);
}

/// Sends `data` and then its end while reading what comes back, until the peer's end.
async fn exchange(stream: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut read, mut write) = stream.into_split();
    let send = async {
        write.write_all(data).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut received = Vec::new();
    let receive = read.read_to_end(&mut received);
    let ((), got) = tokio::time::timeout(WAIT, async { tokio::join!(send, receive) })
        .await
        .expect("the exchange to finish");
    got.unwrap();
    received
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_megabytes_each_way_byte_exact() {
    let to_target = random_bytes(6 << 20);
    let from_target = random_bytes(4 << 20);
    let (received_tx, mut received_rx) = mpsc::unbounded_channel();
    let reply = from_target.clone();
    let target = Target::start(move |stream| {
        let (received_tx, reply) = (received_tx.clone(), reply.clone());
        async move {
            received_tx.send(exchange(stream, &reply).await).unwrap();
        }
    })
    .await;
    let relay = RunningRelay::start(relay_config(target.port, 0)).await;

    let received = exchange(relay.connect().await, &to_target).await;
    assert!(received == from_target, "target -> client bytes differ");
    let at_target = tokio::time::timeout(WAIT, received_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(at_target == to_target, "client -> target bytes differ");

    relay
        .wait_count("connection released", |c| &c.active_connections, 0)
        .await;
    assert_eq!(relay.count(|c| &c.connections_total), 1);
    assert_eq!(
        relay.count(|c| &c.bytes_to_target_total),
        to_target.len() as u64
    );
    assert_eq!(
        relay.count(|c| &c.bytes_from_target_total),
        from_target.len() as u64
    );
    assert_eq!(relay.count(|c| &c.refused_total), 0);
    assert_eq!(relay.count(|c| &c.rejected_full_total), 0);
    assert_eq!(relay.count(|c| &c.connect_failures_total), 0);
}

#[tokio::test]
async fn simultaneous_echo_of_megabytes() {
    let target = Target::echo().await;
    let relay = RunningRelay::start(relay_config(target.port, 0)).await;
    let data = random_bytes(8 << 20);
    let back = exchange(relay.connect().await, &data).await;
    assert!(back == data, "echoed bytes differ");
    relay
        .wait_count("connection released", |c| &c.active_connections, 0)
        .await;
    assert_eq!(relay.count(|c| &c.bytes_to_target_total), data.len() as u64);
    assert_eq!(
        relay.count(|c| &c.bytes_from_target_total),
        data.len() as u64
    );
}

#[tokio::test]
async fn client_half_close_reaches_the_target_and_the_answer_still_comes_back() {
    // The target answers only once it has seen the end of the request.
    let target = Target::start(|mut stream| async move {
        let mut request = Vec::new();
        stream.read_to_end(&mut request).await.unwrap();
        request.reverse();
        stream.write_all(&request).await.unwrap();
        stream.shutdown().await.unwrap();
    })
    .await;
    let relay = RunningRelay::start(relay_config(target.port, 0)).await;

    let mut client = relay.connect().await;
    let request = random_bytes(300_000);
    client.write_all(&request).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut answer))
        .await
        .expect("an answer after the half-close")
        .unwrap();
    let mut expected = request;
    expected.reverse();
    assert!(answer == expected, "answer differs");
}

#[tokio::test]
async fn target_half_close_reaches_the_client_and_the_client_can_still_send() {
    let (received_tx, mut received_rx) = mpsc::unbounded_channel();
    let target = Target::start(move |mut stream| {
        let received_tx = received_tx.clone();
        async move {
            stream.write_all(b"greeting").await.unwrap();
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            received_tx.send(rest).unwrap();
        }
    })
    .await;
    let relay = RunningRelay::start(relay_config(target.port, 0)).await;

    let mut client = relay.connect().await;
    let mut greeting = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut greeting))
        .await
        .expect("the target's end of stream")
        .unwrap();
    assert_eq!(greeting, b"greeting");
    let late = random_bytes(200_000);
    client.write_all(&late).await.unwrap();
    client.shutdown().await.unwrap();
    let at_target = tokio::time::timeout(WAIT, received_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        at_target == late,
        "bytes sent after the target's half-close differ"
    );
}

#[tokio::test]
async fn source_outside_allow_is_refused_without_reaching_the_target() {
    let target = Target::echo().await;
    let mut config = relay_config(target.port, 0);
    config.allow = vec!["127.0.0.2/32".parse().unwrap()];
    let relay = RunningRelay::start(config).await;

    let mut refused = relay.connect_from(LOCALHOST).await;
    assert_closed(&mut refused, "a client from 127.0.0.1").await;
    relay
        .wait_count("refusal counted", |c| &c.refused_total, 1)
        .await;

    let mut allowed_client = relay.connect_from("127.0.0.2".parse().unwrap()).await;
    assert_echoes(&mut allowed_client, b"from 127.0.0.2").await;
    assert_eq!(
        target.accepted(),
        1,
        "only the allowed client reached the target"
    );
    assert_eq!(relay.count(|c| &c.connections_total), 1);
    assert_eq!(relay.count(|c| &c.refused_total), 1);
}

#[test]
fn allow_matches_networks_and_ipv4_clients_of_a_dual_stack_listener() {
    let allow = vec![
        "10.1.0.0/16".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    assert!(allowed(&allow, "10.1.2.3".parse().unwrap()));
    assert!(allowed(&allow, "::ffff:10.1.2.3".parse().unwrap()));
    assert!(allowed(&allow, "2001:db8::1".parse().unwrap()));
    assert!(!allowed(&allow, "10.2.0.1".parse().unwrap()));
    assert!(!allowed(&allow, "::ffff:10.2.0.1".parse().unwrap()));
    assert!(!allowed(&[], "10.1.2.3".parse().unwrap()));
}

proptest::proptest! {
    /// An IPv4 client is judged the same whether it arrives as itself or, on a dual-stack
    /// listener, as `::ffff:a.b.c.d`; and exactly when its network contains it.
    #[test]
    fn allow_judges_mapped_ipv4_as_ipv4(client: u32, network: u32, prefix in 0u8..=32) {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(network), prefix).unwrap();
        let allow = vec![ipnet::IpNet::V4(net)];
        let ip = Ipv4Addr::from(client);
        let expected = net.contains(&ip);
        proptest::prop_assert_eq!(allowed(&allow, IpAddr::V4(ip)), expected);
        proptest::prop_assert_eq!(allowed(&allow, IpAddr::V6(ip.to_ipv6_mapped())), expected);
    }
}

#[tokio::test]
async fn max_connections_is_honoured() {
    let target = Target::echo().await;
    let mut config = relay_config(target.port, 0);
    config.max_connections = 2;
    let relay = RunningRelay::start(config).await;

    let mut first = relay.connect().await;
    let mut second = relay.connect().await;
    assert_echoes(&mut first, b"1").await;
    assert_echoes(&mut second, b"2").await;

    let mut third = relay.connect().await;
    assert_closed(&mut third, "a third connection over max_connections = 2").await;
    relay
        .wait_count("rejection counted", |c| &c.rejected_full_total, 1)
        .await;
    assert_eq!(target.accepted(), 2);

    drop(first);
    relay
        .wait_count("first connection released", |c| &c.active_connections, 1)
        .await;
    let mut fourth = relay.connect().await;
    assert_echoes(&mut fourth, b"4").await;
    assert_echoes(&mut second, b"still there").await;
    assert_eq!(relay.count(|c| &c.connections_total), 3);
    assert_eq!(relay.count(|c| &c.rejected_full_total), 1);
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let target = Target::echo().await;
    let mut config = relay_config(target.port, 0);
    config.idle_timeout = Duration::from_millis(500);
    let relay = RunningRelay::start(config).await;

    let mut client = relay.connect().await;
    assert_echoes(&mut client, b"then silence").await;
    assert_closed(&mut client, "an idle connection").await;
    relay
        .wait_count("idle connection released", |c| &c.active_connections, 0)
        .await;
    assert_eq!(relay.count(|c| &c.connections_total), 1);
}

#[tokio::test]
async fn target_down_is_a_counted_connect_failure() {
    let relay = RunningRelay::start(relay_config(free_port().await, 0)).await;
    let mut client = relay.connect().await;
    assert_closed(&mut client, "a connection to a target that is down").await;
    relay
        .wait_count("connect failure counted", |c| &c.connect_failures_total, 1)
        .await;
    relay
        .wait_count("connection released", |c| &c.active_connections, 0)
        .await;
    assert_eq!(relay.count(|c| &c.connections_total), 0);
}

#[tokio::test]
async fn target_name_is_resolved() {
    let target = Target::echo().await;
    let mut config = relay_config(target.port, 0);
    // "localhost" comes from /etc/hosts; the source keeps the IPv4 address.
    config.target.host = Host::Name("localhost".into());
    config.placement.source = Some(LOCALHOST);
    let relay = RunningRelay::start(config).await;
    let mut client = relay.connect().await;
    assert_echoes(&mut client, b"by name").await;
}

#[tokio::test]
async fn taken_port_is_a_start_error() {
    let holder = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let config = relay_config(1, holder.local_addr().unwrap().port());
    let err = start(
        &config,
        Resolver::from_system().unwrap(),
        Arc::new(RelayCounters::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("relay r: listening on"), "{err}");
}

#[tokio::test]
async fn cancel_closes_connections_and_stops() {
    let target = Target::echo().await;
    let mut relay = RunningRelay::start(relay_config(target.port, 0)).await;
    let mut client = relay.connect().await;
    assert_echoes(&mut client, b"before").await;

    relay.cancel.cancel();
    let task = relay.task.take().unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the relay to stop")
        .unwrap();
    assert_closed(&mut client, "a connection of a stopped relay").await;
    assert_eq!(relay.count(|c| &c.active_connections), 0);
    assert!(
        TcpStream::connect(relay.addr).await.is_err(),
        "still listening"
    );
}

/// Two connected loopback sockets.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[tokio::test]
async fn copy_fallback_sends_pending_bytes_then_the_stream() {
    let (mut writer, from) = socket_pair().await;
    let (to, mut reader) = socket_pair().await;
    let moved = AtomicU64::new(0);
    let activity = Activity::new();
    let data = random_bytes(1 << 20);
    let copy = pump::copy(
        &from,
        &to,
        b"pending".to_vec(),
        Meter {
            moved: &moved,
            activity: &activity,
        },
    );
    let send = async {
        writer.write_all(&data).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let mut received = Vec::new();
    let receive = reader.read_to_end(&mut received);
    let (copied, (), got) = tokio::time::timeout(WAIT, async { tokio::join!(copy, send, receive) })
        .await
        .expect("the copy to finish");
    copied.unwrap();
    got.unwrap();
    let mut expected = b"pending".to_vec();
    expected.extend_from_slice(&data);
    assert!(received == expected, "copied bytes differ");
    assert_eq!(moved.load(Ordering::Relaxed), expected.len() as u64);
}

/// A process stopped by PID (SIGKILL) and reaped when dropped, even if the test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether something listens on TCP `port` (from /proc/net/tcp, so nothing connects to it).
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        matches!(fields.as_slice(), [_, addr, _, state, ..] if addr.ends_with(&local) && *state == "0A")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iperf3_through_the_relay() {
    const IPERF3: &str = "/usr/bin/iperf3";
    let server_port = free_port().await;
    let _server = ChildGuard(
        Command::new(IPERF3)
            .args([
                "-s",
                "-1",
                "-B",
                "127.0.0.1",
                "-p",
                &server_port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 (apt install iperf3)"),
    );
    wait_until("iperf3 server listening", || listening(server_port)).await;
    let relay = RunningRelay::start(relay_config(server_port, 0)).await;

    let client = tokio::process::Command::new(IPERF3)
        .args([
            "-c",
            "127.0.0.1",
            "-p",
            &relay.addr.port().to_string(),
            "-t",
            "2",
            "-J",
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, client)
        .await
        .expect("iperf3 -c to finish")
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.get("error").is_none(), "iperf3: {}", report["error"]);
    let sent = report["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap();
    assert!(received > 10 << 20, "only {received} bytes went through");

    relay
        .wait_count(
            "iperf3's connections released",
            |c| &c.active_connections,
            0,
        )
        .await;
    // A control connection and one data connection.
    assert!(relay.count(|c| &c.connections_total) >= 2);
    // What reached the server went through the relay, plus the control connection's
    // small JSON messages; the relay cannot have passed on more than the client sent.
    let to_target = relay.count(|c| &c.bytes_to_target_total);
    assert!(
        to_target >= received && to_target <= sent + (1 << 20),
        "to target {to_target}, iperf3 sent {sent}, received {received}"
    );
    // Back from the server: only the control connection's messages and results.
    let from_target = relay.count(|c| &c.bytes_from_target_total);
    assert!(
        from_target > 0 && from_target < 1 << 20,
        "from target {from_target}"
    );
}
