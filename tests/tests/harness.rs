//! The harness's own guarantees, which every other suite relies on: processes and
//! namespaces do not outlive their owners, and a private /run stays private.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use siteward_tests::{ChildProcess, Netns, READY_TIMEOUT};

fn alive(pid: Pid) -> bool {
    // Zombies count as gone: /proc/PID/stat says "Z".
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn dropping_a_child_process_kills_its_whole_group() {
    let shell = ChildProcess::spawn("sh", "sh", ["-c", "sleep 300 & echo \"worker $!\"; wait"]);
    let line = shell
        .stdout()
        .wait_for(READY_TIMEOUT, |l| l.starts_with("worker "))
        .unwrap();
    let worker = Pid::from_raw(line["worker ".len()..].parse().unwrap());
    let leader = shell.pid();
    assert!(alive(worker) && alive(leader));
    drop(shell);
    assert!(!alive(leader), "the process outlived its ChildProcess");
    let gone =
        siteward_tests::wait_until(Duration::from_secs(5), || (!alive(worker)).then_some(()));
    assert!(gone.is_some(), "a forked worker outlived its ChildProcess");
    // Signalling a reaped or gone pid fails: nothing of ours is left to hit.
    assert!(kill(leader, None).is_err());
}

#[test]
fn a_namespace_has_its_own_network_and_goes_away_with_its_links() {
    let a = Netns::new();
    let b = Netns::new();
    let (a_dev, b_dev) = a.veth_to(&b);
    a.addr(&a_dev, "10.99.0.1/30");
    b.addr(&b_dev, "10.99.0.2/30");
    // A reaches B across the pair.
    let listener = b.tcp_listener("10.99.0.2:0".parse().unwrap());
    let addr = listener.local_addr().unwrap();
    let stream = siteward_tests::netns::connect(Some(a.name()), addr, Duration::from_secs(5));
    assert!(stream.is_ok(), "{stream:?}");
    // A socket keeps its namespace alive: close it so A can really go away below.
    drop(stream);
    let out = a.exec("ip", ["-o", "addr", "show", "dev", &a_dev]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.99.0.1/30"));
    // Nothing of it is visible in the root namespace.
    let root = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(!root.contains(&a_dev) && !root.contains(&b_dev), "{root}");

    let sleeper = a.spawn("sleep", "sleep", ["300"]);
    let pid = sleeper.pid();
    // `ip netns exec` enters the namespace just after it starts: a bounded wait.
    let inside =
        siteward_tests::wait_until(READY_TIMEOUT, || a.pids().contains(&pid).then_some(()));
    assert!(
        inside.is_some(),
        "sleep never showed up inside {}",
        a.name()
    );
    let name = a.name().to_string();
    drop(a);
    assert!(!Path::new("/run/netns").join(&name).exists());
    // The veth pair goes with it: B's end too (the kernel tears a namespace down
    // asynchronously, so this is a bounded wait).
    let gone = siteward_tests::wait_until(Duration::from_secs(10), || {
        let links = b.exec("ip", ["-o", "link"]);
        (!String::from_utf8_lossy(&links.stdout).contains(&b_dev)).then_some(())
    });
    assert!(gone.is_some(), "{b_dev} outlived the namespace of its peer");
    drop(sleeper);
    assert!(!alive(pid));
}

#[test]
fn a_private_run_directory_hides_the_real_one() {
    let ns = Netns::new();
    let run = tempfile::tempdir().unwrap();
    let marker = format!("swt-marker-{}", std::process::id());
    let mut child = ns.spawn_with_private_run(
        "sh",
        run.path(),
        "sh",
        ["-c", &format!("touch /run/{marker} && ls /run")],
    );
    let status = child.wait_timeout(READY_TIMEOUT).expect("sh exits");
    assert!(status.success(), "{}", child.output_tail(10));
    assert!(run.path().join(&marker).exists());
    assert!(!Path::new("/run").join(&marker).exists());
    // Inside, /run showed only the private directory's content.
    assert!(child.stdout().wait_closed(READY_TIMEOUT));
    assert_eq!(child.stdout().all(), vec![marker]);
}

#[test]
fn sockets_made_inside_a_namespace_stay_there() {
    let ns = Netns::new();
    let listener = ns.tcp_listener("127.0.0.1:0".parse().unwrap());
    let addr = listener.local_addr().unwrap();
    // From the root namespace the port is not there...
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    // ...from inside it is.
    let stream = siteward_tests::netns::connect(Some(ns.name()), addr, Duration::from_secs(2));
    assert!(stream.is_ok(), "{stream:?}");
}
