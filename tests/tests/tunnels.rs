//! Siteward <-> Siteward WireGuard tunnels between network namespaces: routing by allowed
//! IPs across several peers on one interface, hot reload without disturbing other peers,
//! hostile datagrams on the listen port, and a port already in use.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use siteward_tests::netns::unique_ifname;
use siteward_tests::{promtool_check, siteward_bin, Daemon, Netns, WgKeys, STATE_TIMEOUT};

const PORT: u16 = 51820;

struct PeerSpec<'a> {
    name: &'a str,
    public: &'a str,
    endpoint: Option<String>,
    allowed: &'a [&'a str],
    keepalive: Option<&'a str>,
}

fn tunnel_toml(
    name: &str,
    ifname: &str,
    private: &str,
    address: &str,
    peers: &[PeerSpec],
) -> String {
    let mut text = format!(
        "[[tunnels]]\nname = \"{name}\"\nkind = \"wireguard\"\ninterface = \"{ifname}\"\n\
         private_key = \"{private}\"\nlisten_port = {PORT}\naddresses = [\"{address}\"]\n"
    );
    for p in peers {
        let allowed: Vec<String> = p.allowed.iter().map(|a| format!("\"{a}\"")).collect();
        text += &format!(
            "\n[[tunnels.peers]]\nname = \"{}\"\npublic_key = \"{}\"\nallowed_ips = [{}]\n",
            p.name,
            p.public,
            allowed.join(", ")
        );
        if let Some(e) = &p.endpoint {
            text += &format!("endpoint = \"{e}\"\n");
        }
        if let Some(k) = p.keepalive {
            text += &format!("persistent_keepalive = \"{k}\"\n");
        }
    }
    text
}

/// `ping` from inside `ns`; true if every reply came back.
fn ping(ns: &Netns, to: &str, count: u32, interval: &str) -> (bool, String) {
    let out = ns.exec(
        "ping",
        [
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "1",
            to,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success() && text.contains(" 0% packet loss"),
        text,
    )
}

fn wait_ping(ns: &Netns, to: &str) {
    let ok = siteward_tests::wait_until(STATE_TIMEOUT, || ping(ns, to, 1, "0.2").0.then_some(()));
    assert!(ok.is_some(), "{to} never answered through the tunnel");
}

fn peer<'a>(tunnel: &'a Value, name: &str) -> &'a Value {
    tunnel["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no peer {name} in {tunnel:#}"))
}

/// A hub with three spokes behind one interface; each spoke's network routes to it alone.
/// Fields drop in order: the daemons stop (and remove their sockets) before their
/// namespaces go.
struct Star {
    hub: Daemon,
    spokes: Vec<Daemon>,
    hub_ns: Netns,
    spoke_ns: Vec<Netns>,
    spoke_keys: Vec<WgKeys>,
    hub_keys: WgKeys,
    hub_if: String,
}

fn spoke_peer<'a>(i: usize, keys: &'a [WgKeys]) -> PeerSpec<'a> {
    const ALLOWED: [&[&str]; 3] = [&["10.88.1.0/24"], &["10.88.2.0/24"], &["10.88.3.0/24"]];
    const NAMES: [&str; 3] = ["spoke-1", "spoke-2", "spoke-3"];
    PeerSpec {
        name: NAMES[i],
        public: &keys[i].public,
        endpoint: None,
        allowed: ALLOWED[i],
        keepalive: None,
    }
}

fn star(spokes: usize) -> Star {
    let hub_ns = Netns::new();
    let spoke_ns: Vec<Netns> = (0..spokes).map(|_| Netns::new()).collect();
    for (i, ns) in spoke_ns.iter().enumerate() {
        let (here, there) = hub_ns.veth_to(ns);
        hub_ns.addr(&here, &format!("198.51.100.{}/30", 4 * i + 1));
        ns.addr(&there, &format!("198.51.100.{}/30", 4 * i + 2));
    }
    let hub_keys = WgKeys::generate();
    let spoke_keys: Vec<WgKeys> = (0..spokes).map(|_| WgKeys::generate()).collect();
    let hub_if = unique_ifname('s');
    let peers: Vec<PeerSpec> = (0..spokes).map(|i| spoke_peer(i, &spoke_keys)).collect();
    let hub = Daemon::start_in(
        &hub_ns,
        &tunnel_toml("hub", &hub_if, &hub_keys.private, "10.88.0.1/24", &peers),
    );
    hub.wait_for_tunnel("hub");
    let spokes: Vec<Daemon> = spoke_ns
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            // Spokes know the hub's address and keep the path open; the hub waits.
            let daemon = Daemon::start_in(
                ns,
                &tunnel_toml(
                    "uplink",
                    &unique_ifname('s'),
                    &spoke_keys[i].private,
                    &format!("10.88.{}.1/24", i + 1),
                    &[PeerSpec {
                        name: "hub",
                        public: &hub_keys.public,
                        endpoint: Some(format!("198.51.100.{}:{PORT}", 4 * i + 1)),
                        allowed: &["10.88.0.0/24"],
                        keepalive: Some("1s"),
                    }],
                ),
            );
            daemon.wait_for_tunnel("uplink");
            daemon
        })
        .collect();
    Star {
        hub_ns,
        spoke_ns,
        hub,
        spokes,
        spoke_keys,
        hub_keys,
        hub_if,
    }
}

#[test]
fn three_peers_on_one_interface_are_routed_by_allowed_ips() {
    let star = star(3);
    let token = star.hub.create_token("t");
    for i in 0..3 {
        wait_ping(&star.hub_ns, &format!("10.88.{}.1", i + 1));
    }
    // Each spoke answers only for its own network: traffic to spoke-2 went to spoke-2.
    let before = star.hub.tunnel(&token, "hub");
    let (ok, text) = ping(&star.hub_ns, "10.88.2.1", 20, "0.01");
    assert!(ok, "{text}");
    let after = star.hub.tunnel(&token, "hub");
    let sent = |t: &Value, p: &str| peer(t, p)["tx_bytes"].as_u64().unwrap();
    assert!(sent(&after, "spoke-2") >= sent(&before, "spoke-2") + 20 * 96);
    assert!(sent(&after, "spoke-1") < sent(&before, "spoke-1") + 20 * 96);
    assert!(sent(&after, "spoke-3") < sent(&before, "spoke-3") + 20 * 96);
    assert_eq!(after["state"], "up", "{after:#}");
    // Each spoke reached the hub from its own veth: that is the endpoint the hub follows.
    for i in 0..3 {
        let endpoint = peer(&after, &format!("spoke-{}", i + 1))["endpoint"].clone();
        assert_eq!(endpoint, format!("198.51.100.{}:{PORT}", 4 * i + 2));
    }
    // Spokes reach each other only through the hub's routes, which they do not have:
    // a spoke's packet to another spoke's network is not routed into its tunnel.
    let (ok, _) = ping(&star.spoke_ns[0], "10.88.2.1", 1, "0.2");
    assert!(!ok, "spoke-1 must not reach spoke-2's network");
    // A destination inside the hub's subnet that no peer owns is dropped and counted.
    let (ok, _) = ping(&star.hub_ns, "10.88.0.99", 1, "0.2");
    assert!(!ok);
    let scrape = star.hub.scrape();
    let no_route = scrape
        .get(
            "siteward_tunnel_packets_dropped_total",
            &[("tunnel", "hub"), ("reason", "no_route")],
        )
        .unwrap_or(0.0);
    assert!(no_route >= 1.0, "no_route drops: {no_route}");
    let _ = (&star.spokes, &star.spoke_keys, &star.hub_keys, &star.hub_if);
}

#[test]
fn reloading_one_peer_leaves_the_others_flowing() {
    let star = star(2);
    let token = star.hub.create_token("t");
    wait_ping(&star.hub_ns, "10.88.1.1");
    wait_ping(&star.hub_ns, "10.88.2.1");
    // Let spoke-1's session age, so that a re-handshake would show as a later time.
    let handshake_before =
        star.hub
            .wait_until(STATE_TIMEOUT, "spoke-1's session is 2 s old", || {
                let at = handshake_time(&star.hub.tunnel(&token, "hub"), "spoke-1")?;
                (SystemTime::now().duration_since(at).ok()? >= Duration::from_secs(2)).then_some(at)
            });

    // Traffic to spoke-1 while spoke-2 is changed (a second network) and a third peer is
    // added, then spoke-2 removed.
    let hub_ns_name = star.hub_ns.name().to_string();
    let pinger = std::thread::spawn(move || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &hub_ns_name,
                "ping",
                "-n",
                "-q",
                "-c",
                "400",
                "-i",
                "0.005",
                "-W",
                "1",
                "10.88.1.1",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let extra = WgKeys::generate();
    let spoke2_wide = PeerSpec {
        allowed: &["10.88.2.0/24", "10.88.20.0/24"],
        ..spoke_peer(1, &star.spoke_keys)
    };
    let third = PeerSpec {
        name: "spoke-9",
        public: &extra.public,
        endpoint: None,
        allowed: &["10.88.9.0/24"],
        keepalive: None,
    };
    for peers in [
        vec![spoke_peer(0, &star.spoke_keys), spoke2_wide, third],
        vec![spoke_peer(0, &star.spoke_keys)],
    ] {
        star.hub.write_config_raw(&format!(
            "{}\n{}",
            star.hub.config_header(),
            tunnel_toml(
                "hub",
                &star.hub_if,
                &star.hub_keys.private,
                "10.88.0.1/24",
                &peers
            )
        ));
        let reloads = count_logs(&star.hub, "configuration reloaded");
        star.hub.sighup();
        star.hub.wait_until(STATE_TIMEOUT, "the reload", || {
            (count_logs(&star.hub, "configuration reloaded") > reloads).then_some(())
        });
    }
    let text = pinger.join().unwrap();
    assert!(
        text.contains(" 0% packet loss"),
        "spoke-1 lost packets during the reloads: {text}"
    );

    let tunnel = star.hub.tunnel(&token, "hub");
    let names: Vec<&str> = tunnel["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spoke-1"]);
    // No re-handshake for the untouched peer.
    // (The time is computed from a monotonic age, so two readings may differ slightly.)
    let handshake_after = handshake_time(&tunnel, "spoke-1").unwrap();
    let moved = handshake_after
        .duration_since(handshake_before)
        .or_else(|_| handshake_before.duration_since(handshake_after))
        .unwrap();
    assert!(
        moved < Duration::from_millis(500),
        "spoke-1 handshook again: {moved:?}"
    );
    // The removed peer's routes are gone, the kept peer's stay.
    let routes = String::from_utf8_lossy(&star.hub_ns.exec("ip", ["route"]).stdout).into_owned();
    assert!(routes.contains("10.88.1.0/24"), "{routes}");
    assert!(!routes.contains("10.88.2.0/24"), "{routes}");
    assert!(!routes.contains("10.88.20.0/24"), "{routes}");
    assert!(!routes.contains("10.88.9.0/24"), "{routes}");

    // Removing the tunnel removes its interface (with its routes) and its UAPI socket.
    star.hub.write_config_raw(&star.hub.config_header());
    let reloads = count_logs(&star.hub, "configuration reloaded");
    star.hub.sighup();
    star.hub.wait_until(STATE_TIMEOUT, "the reload", || {
        (count_logs(&star.hub, "configuration reloaded") > reloads).then_some(())
    });
    let link = star.hub_ns.exec("ip", ["link", "show", &star.hub_if]);
    assert!(!link.status.success(), "{} is still there", star.hub_if);
    assert!(!siteward_tests::wireguard::uapi_socket(&star.hub_if).exists());
    let routes = String::from_utf8_lossy(&star.hub_ns.exec("ip", ["route"]).stdout).into_owned();
    assert!(!routes.contains("10.88."), "{routes}");
}

fn handshake_time(tunnel: &Value, name: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(peer(tunnel, name)["last_handshake"].as_str()?).ok()
}

fn count_logs(daemon: &Daemon, message: &str) -> usize {
    daemon
        .log_records()
        .iter()
        .filter(|r| r["message"] == message)
        .count()
}

#[test]
fn hostile_datagrams_replays_and_floods_are_dropped_and_counted() {
    // One spoke whose hub endpoint is a relay in the spoke's namespace: the relay forwards
    // both ways, and also sends the hub copies of the first handshake and data message,
    // and garbage.
    let hub_ns = Netns::new();
    let spoke_ns = Netns::new();
    let (here, there) = hub_ns.veth_to(&spoke_ns);
    hub_ns.addr(&here, "198.51.100.1/30");
    spoke_ns.addr(&there, "198.51.100.2/30");
    let hub_keys = WgKeys::generate();
    let spoke_keys = WgKeys::generate();
    let hub = Daemon::start_in(
        &hub_ns,
        &tunnel_toml(
            "hub",
            &unique_ifname('s'),
            &hub_keys.private,
            "10.88.0.1/24",
            &[spoke_peer(0, std::slice::from_ref(&spoke_keys))],
        ),
    );
    hub.wait_for_tunnel("hub");
    let token = hub.create_token("t");

    let relay_in = spoke_ns.udp_socket("127.0.0.1:0".parse().unwrap());
    let relay_out = spoke_ns.udp_socket("198.51.100.2:0".parse().unwrap());
    let relay_addr = relay_in.local_addr().unwrap();
    let hub_addr: SocketAddr = format!("198.51.100.1:{PORT}").parse().unwrap();
    let relay = Relay::start(relay_in, relay_out, hub_addr);

    let spoke = Daemon::start_in(
        &spoke_ns,
        &tunnel_toml(
            "uplink",
            &unique_ifname('s'),
            &spoke_keys.private,
            "10.88.1.1/24",
            &[PeerSpec {
                name: "hub",
                public: &hub_keys.public,
                endpoint: Some(relay_addr.to_string()),
                allowed: &["10.88.0.0/24"],
                keepalive: None,
            }],
        ),
    );
    spoke.wait_for_tunnel("uplink");
    wait_ping(&spoke_ns, "10.88.0.1");

    let garbage_sent = relay.replay_and_garbage();
    assert!(garbage_sent > 0);
    // The tunnel still works, and the hub counted what it refused.
    wait_ping(&spoke_ns, "10.88.0.1");
    let dropped = |reason: &str| {
        hub.scrape()
            .get(
                "siteward_tunnel_packets_dropped_total",
                &[("tunnel", "hub"), ("reason", reason)],
            )
            .unwrap_or(0.0)
    };
    hub.wait_until(STATE_TIMEOUT, "replays and garbage are counted", || {
        (dropped("replay") >= 2.0
            && dropped("invalid_packet") >= 1.0
            && dropped("invalid_mac") >= 1.0)
            .then_some(())
    });
    // A flood of handshakes puts the hub under load: it answers with cookie replies
    // (boringtun's rate limiter) instead of doing the Diffie-Hellman work, and says so.
    relay.flood_handshakes(600);
    hub.wait_until(STATE_TIMEOUT, "cookie replies under load", || {
        (dropped("under_load") >= 1.0 && relay.cookies() >= 1).then_some(())
    });
    wait_ping(&spoke_ns, "10.88.0.1");
    let tunnel = hub.tunnel(&token, "hub");
    assert_eq!(tunnel["state"], "up", "{tunnel:#}");
    // The tunnel series are valid exposition.
    let (ok, said) = promtool_check(&hub.scrape_raw().text());
    assert!(ok, "promtool: {said}");
    drop(relay);
    let _ = spoke;
}

/// The first handshake initiation and data message the relay forwarded.
#[derive(Default, Clone)]
struct Seen {
    init: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
    /// Cookie replies (type 3) the hub sent.
    cookies: usize,
}

/// A UDP relay between a spoke (on loopback) and the hub, remembering the first handshake
/// initiation and data message it forwarded to the hub.
struct Relay {
    to_hub: UdpSocket,
    hub: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(from_spoke: UdpSocket, to_hub: UdpSocket, hub: SocketAddr) -> Relay {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spoke_addr = std::sync::Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        for s in [&from_spoke, &to_hub] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let up = {
            let (from_spoke, to_hub) =
                (from_spoke.try_clone().unwrap(), to_hub.try_clone().unwrap());
            let (seen, stop, spoke_addr) = (seen.clone(), stop.clone(), spoke_addr.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = from_spoke.recv_from(&mut buf) else {
                        continue;
                    };
                    *spoke_addr.lock().unwrap() = Some(from);
                    let message = &buf[..n];
                    let mut seen = seen.lock().unwrap();
                    match message.first() {
                        Some(1) if seen.init.is_none() => seen.init = Some(message.to_vec()),
                        Some(4) if seen.data.is_none() && n > 32 => {
                            seen.data = Some(message.to_vec())
                        }
                        _ => {}
                    }
                    let _ = to_hub.send_to(message, hub);
                }
            })
        };
        let down = {
            let (from_spoke, to_hub) = (from_spoke, to_hub.try_clone().unwrap());
            let (seen, stop, spoke_addr) = (seen.clone(), stop.clone(), spoke_addr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = to_hub.recv_from(&mut buf) else {
                        continue;
                    };
                    if buf[0] == 3 {
                        seen.lock().unwrap().cookies += 1;
                    }
                    if let Some(spoke) = *spoke_addr.lock().unwrap() {
                        let _ = from_spoke.send_to(&buf[..n], spoke);
                    }
                }
            })
        };
        Relay {
            to_hub,
            hub,
            seen,
            stop,
            threads: vec![up, down],
        }
    }

    /// Replays the remembered handshake and data message, then sends garbage; returns how
    /// many datagrams it sent.
    fn replay_and_garbage(&self) -> usize {
        let Seen { init, data, .. } = self.seen.lock().unwrap().clone();
        let init = init.expect("the relay saw a handshake initiation");
        let data = data.expect("the relay saw a data message");
        let mut garbage: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 3],
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            vec![4, 0, 0, 0],
        ];
        // The right type and length for an initiation, but a MAC that is not ours.
        let mut forged = init.clone();
        forged[init.len() - 20] ^= 0x55;
        garbage.push(forged);
        let messages = [vec![init, data], garbage].concat();
        for m in &messages {
            self.to_hub.send_to(m, self.hub).unwrap();
        }
        messages.len()
    }
}

impl Relay {
    /// Sends the remembered handshake initiation `n` times at once: more than the hub
    /// takes in a second, so it must answer with cookies.
    fn flood_handshakes(&self, n: usize) {
        let init = self
            .seen
            .lock()
            .unwrap()
            .init
            .clone()
            .expect("an initiation");
        for _ in 0..n {
            self.to_hub.send_to(&init, self.hub).unwrap();
        }
    }

    fn cookies(&self) -> usize {
        self.seen.lock().unwrap().cookies
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn a_tunnel_whose_port_is_taken_fails_alone() {
    let ns = Netns::new();
    let _holder = ns.udp_socket(format!("0.0.0.0:{PORT}").parse().unwrap());
    let k = WgKeys::generate();
    let other = WgKeys::generate();
    let daemon = Daemon::start_in(
        &ns,
        &format!(
            "{}\n[[checks]]\nname = \"local\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:9\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
            tunnel_toml(
                "busy",
                &unique_ifname('s'),
                &k.private,
                "10.88.0.1/24",
                &[PeerSpec { name: "p", public: &other.public, endpoint: None, allowed: &["10.88.1.0/24"], keepalive: None }],
            )
        ),
    );
    let token = daemon.create_token("t");
    let tunnel = daemon.tunnel(&token, "busy");
    assert_eq!(tunnel["state"], "failed", "{tunnel:#}");
    let error = tunnel["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("binding UDP port {PORT}")),
        "{error}"
    );
    assert!(
        !error.contains(&k.private),
        "the error leaks the key: {error}"
    );
    // The rest of the daemon runs: its check does.
    daemon.wait_for_check(&token, "local", STATE_TIMEOUT, "ran", |c| {
        !c["last"].is_null()
    });
    let scrape = daemon.scrape();
    assert_eq!(
        scrape.get(
            "siteward_tunnel_up",
            &[("tunnel", "busy"), ("kind", "wireguard")]
        ),
        Some(0.0)
    );
}

#[test]
fn a_check_placed_on_the_tunnel_interface_follows_the_tunnel() {
    let star = star(1);
    wait_ping(&star.hub_ns, "10.88.1.1");
    // A service on the hub's tunnel address, checked from the spoke through the tunnel.
    let listener = star.hub_ns.tcp_listener("10.88.0.1:0".parse().unwrap());
    let port = listener.local_addr().unwrap().port();
    let spoke = &star.spokes[0];
    let spoke_if = spoke
        .log_records()
        .iter()
        .find(|r| r["message"] == "tunnel started")
        .and_then(|r| r["interface"].as_str().map(str::to_string))
        .expect("the spoke logged its tunnel");
    let header = spoke.config_header();
    let tunnel_section = std::fs::read_to_string(spoke.config_path())
        .unwrap()
        .split_once("[[tunnels]]")
        .map(|(_, rest)| format!("[[tunnels]]{rest}"))
        .unwrap();
    spoke.write_config_raw(&format!(
        "{header}\n{tunnel_section}\n[[checks]]\nname = \"via-tunnel\"\nkind = \"tcp\"\n\
         target = \"10.88.0.1:{port}\"\ninterface = \"{spoke_if}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
    ));
    spoke.sighup();
    let token = spoke.create_token("t");
    spoke.wait_for_check_state(&token, "via-tunnel", "up", "ok");
    drop(listener);
}

#[test]
fn siteward_wg_keys_are_those_of_wg() {
    // `siteward wg genkey` makes a key `wg pubkey` accepts, and `siteward wg pubkey`
    // derives the same public key from it as `wg pubkey` does.
    let run = |args: &[&str], input: Option<&str>| -> (bool, String, String) {
        let mut child = Command::new(siteward_bin())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = input {
            std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, private, _) = run(&["wg", "genkey"], None);
    assert!(ok);
    let (ok, public, _) = run(&["wg", "pubkey"], Some(&private));
    assert!(ok);
    assert_eq!(public, siteward_tests::wireguard::public_key_of(&private));
    // And the other way: a key from `wg genkey`.
    let keys = WgKeys::generate();
    assert_eq!(run(&["wg", "pubkey"], Some(&keys.private)).1, keys.public);
    // Not a key: an error that does not echo the input.
    let (ok, _, err) = run(&["wg", "pubkey"], Some("not-a-key-hunter2"));
    assert!(!ok);
    assert!(!err.contains("hunter2"), "{err}");
}
