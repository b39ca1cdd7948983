//! What the demo watches: signals (Ctrl-C, SIGTERM, a closed terminal's SIGHUP), the
//! appliance's `/metrics` seen from this host, and the platform receiver's log.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

/// Longest `/metrics` answer read.
const MAX_SCRAPE: u64 = 8 << 20;
/// Connecting to and reading from the appliance.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// How much of the platform's log end is searched for its running total.
const PLATFORM_LOG_TAIL: u64 = 1 << 20;

/// A stop signal arrived: the demo removes the lab and ends.
#[derive(Debug, thiserror::Error)]
#[error("{0} received")]
pub struct Interrupted(pub &'static str);

/// The stop signals, delivered on a channel by a thread of their own, so the demo's
/// blocking steps can wait on them.
pub struct Signals {
    received: mpsc::Receiver<&'static str>,
}

impl Signals {
    /// Installs the handlers (before returning: a signal from then on is never lost).
    pub fn install() -> anyhow::Result<Signals> {
        let (installed_tx, installed_rx) = mpsc::channel::<Result<(), String>>();
        let (tx, received) = mpsc::channel();
        std::thread::Builder::new()
            .name("demo-signals".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = installed_tx.send(Err(format!("starting a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let streams = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                        signal(SignalKind::hangup()),
                    );
                    let (mut int, mut term, mut hup) = match streams {
                        (Ok(int), Ok(term), Ok(hup)) => (int, term, hup),
                        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                            let _ = installed_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = installed_tx.send(Ok(()));
                    loop {
                        let name = tokio::select! {
                            _ = int.recv() => "SIGINT",
                            _ = term.recv() => "SIGTERM",
                            _ = hup.recv() => "SIGHUP",
                        };
                        if tx.send(name).is_err() {
                            return;
                        }
                    }
                });
            })
            .context("starting the signal thread")?;
        installed_rx
            .recv()
            .context("the signal thread ended before installing its handlers")?
            .map_err(|e| anyhow::anyhow!("installing the signal handlers: {e}"))?;
        Ok(Signals { received })
    }

    /// Waits up to `timeout`; `Err(Interrupted)` if a stop signal came.
    pub fn pause(&self, timeout: Duration) -> Result<(), Interrupted> {
        match self.received.recv_timeout(timeout) {
            Ok(name) => Err(Interrupted(name)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The thread is gone (it never returns while the demo runs): keep the
                // pace of the caller's poll without it.
                std::thread::sleep(timeout);
                Ok(())
            }
        }
    }
}

/// One `/metrics` exposition.
pub struct Scrape {
    text: String,
}

/// `GET /metrics` from the appliance over plain HTTP/1.0 (so the body is not chunked).
pub fn scrape(addr: SocketAddr) -> io::Result<Scrape> {
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut bytes = Vec::new();
    stream.take(MAX_SCRAPE).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of headers"))?;
    let status = head.split_whitespace().nth(1);
    if status != Some("200") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "/metrics answered {}",
                head.lines().next().unwrap_or_default()
            ),
        ));
    }
    Ok(Scrape {
        text: body.to_string(),
    })
}

impl Scrape {
    /// The samples called `name`: their label text (inside the braces) and value.
    fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.text.lines().filter_map(move |line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(inside) => inside.rsplit_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
    }

    /// The value of `name` with `label="value"` among its labels.
    pub fn value(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        self.samples(name)
            .find(|(labels, _)| label_value(labels, label) == Some(value))
            .map(|(_, v)| v)
    }

    /// The value of `name` without labels.
    pub fn plain(&self, name: &str) -> Option<f64> {
        self.samples(name)
            .find(|(labels, _)| labels.is_empty())
            .map(|(_, v)| v)
    }
}

/// `key`'s value in a label text like `check="a",kind="tcp"` (values of the demo's names
/// hold no quotes or commas).
fn label_value<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// The events the platform receiver has taken so far, from the running total in the
/// last batch line of its JSON log (`None` before the first batch).
pub fn platform_events(log: &Path) -> Option<u64> {
    let mut file = File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(PLATFORM_LOG_TAIL)))
        .ok()?;
    let mut bytes = Vec::new();
    file.take(PLATFORM_LOG_TAIL).read_to_end(&mut bytes).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .rev()
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            value.get("events_total")?.as_u64()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "# HELP siteward_check_up Whether the check is up.\n\
        # TYPE siteward_check_up gauge\n\
        siteward_check_up{check=\"pbx-sip\",kind=\"sip-options\"} 1\n\
        siteward_check_up{check=\"pbx\",kind=\"asterisk-ami\"} 0\n\
        siteward_tunnel_up{tunnel=\"cloud\",kind=\"wireguard\"} 1\n\
        siteward_uplink_events_delivered_total 42\n\
        siteward_uplink_events_delivered_total_other 7\n";

    #[test]
    fn samples_are_found_by_name_and_label() {
        let scrape = Scrape {
            text: EXPOSITION.into(),
        };
        assert_eq!(
            scrape.value("siteward_check_up", "check", "pbx-sip"),
            Some(1.0)
        );
        // A label value that is a prefix of another is not confused with it.
        assert_eq!(scrape.value("siteward_check_up", "check", "pbx"), Some(0.0));
        assert_eq!(scrape.value("siteward_check_up", "check", "none"), None);
        assert_eq!(
            scrape.value("siteward_tunnel_up", "tunnel", "cloud"),
            Some(1.0)
        );
        assert_eq!(
            scrape.plain("siteward_uplink_events_delivered_total"),
            Some(42.0)
        );
        assert_eq!(scrape.plain("siteward_uplink"), None);
    }

    #[test]
    fn the_platform_total_is_the_last_batch_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("platform.log");
        assert_eq!(platform_events(&log), None);
        std::fs::write(
            &log,
            "{\"message\":\"listening\"}\n\
             {\"message\":\"platform: batch received\",\"events_total\":3}\n\
             not json\n\
             {\"message\":\"platform: batch received\",\"events_total\":11}\n\
             {\"message\":\"platform: refused a malformed batch\"}\n",
        )
        .unwrap();
        assert_eq!(platform_events(&log), Some(11));
    }
}
