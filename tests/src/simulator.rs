//! The protocol simulators of the binary (`siteward simulate KIND`), as peers for checks.

use std::net::SocketAddr;
use std::process::Command;

use crate::daemon::json_line;
use crate::netns::Netns;
use crate::process::ChildProcess;
use crate::{siteward_bin, READY_TIMEOUT};

/// A running `siteward simulate KIND --listen IP:0 ...`; killed on drop.
pub struct Simulator {
    pub process: ChildProcess,
    /// The address it bound (from its `listening` log line).
    pub addr: SocketAddr,
}

impl Simulator {
    /// Starts simulator `kind` on 127.0.0.1 with extra `args` (`--mode deny`...).
    pub fn start(kind: &str, args: &[&str]) -> Simulator {
        Simulator::start_at(None, "127.0.0.1", kind, args)
    }

    /// Starts simulator `kind` on `ip` (port 0), inside `netns` if given, and waits for
    /// its `listening` log line.
    pub fn start_at(netns: Option<&Netns>, ip: &str, kind: &str, args: &[&str]) -> Simulator {
        let bin = siteward_bin();
        let mut command = match netns {
            Some(ns) => ns.command(&bin),
            None => Command::new(&bin),
        };
        command
            .args(["simulate", kind, "--listen", &format!("{ip}:0")])
            .args(["--log-format", "json"])
            .args(args)
            .env_remove("SITEWARD_LOG");
        let process = ChildProcess::spawn_command(&format!("simulate {kind}"), command);
        let line = process
            .stderr()
            .wait_for(READY_TIMEOUT, |l| {
                json_line(l).is_some_and(|v| v["message"] == "listening" && v["listener"] == kind)
            })
            .unwrap_or_else(|e| {
                panic!(
                    "simulator {kind} did not start: {e}\n{}",
                    process.output_tail(30)
                )
            });
        let addr = json_line(&line)
            .and_then(|v| v["addr"].as_str().and_then(|a| a.parse().ok()))
            .unwrap_or_else(|| panic!("no address in {line}"));
        Simulator { process, addr }
    }
}
