//! Child processes the suites start (the daemon, peers such as kamailio or dnsmasq), with
//! their output captured line by line and a guaranteed kill on drop.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Lines kept per stream; older ones are dropped so a chatty peer cannot grow a test's memory.
const MAX_LINES: usize = 20_000;
/// How long a process gets to exit after SIGTERM before it and its group are killed.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// The lines written to one output stream, shared with the thread that reads them.
#[derive(Default)]
pub struct Lines {
    state: Mutex<LinesState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinesState {
    lines: VecDeque<String>,
    /// Lines dropped from the front to respect [`MAX_LINES`].
    dropped: usize,
    /// The stream reached end of file (the process closed it or exited).
    closed: bool,
}

impl Lines {
    /// Reads `stream` to its end on a background thread, one line at a time.
    fn capture(stream: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = lines.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        let mut state = sink.state.lock().unwrap_or_else(|e| e.into_inner());
                        if state.lines.len() == MAX_LINES {
                            state.lines.pop_front();
                            state.dropped += 1;
                        }
                        state.lines.push_back(line);
                        sink.changed.notify_all();
                    }
                }
            }
            sink.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            sink.changed.notify_all();
        });
        lines
    }

    /// Every line captured so far.
    pub fn all(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.lines.iter().cloned().collect()
    }

    /// The last `n` lines, joined, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let skip = state.lines.len().saturating_sub(n);
        state
            .lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the stream has ended (every line written is then captured); false if
    /// it is still open after `timeout`.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        state.closed
    }

    /// Waits until a line satisfies `pred` and returns it; `Err` with the reason if the
    /// stream closes first or `timeout` passes. Lines already captured count.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        // Absolute number of lines already looked at (lines dropped meanwhile included).
        let mut seen: usize = 0;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let skip = seen.saturating_sub(state.dropped);
            if let Some(line) = state.lines.iter().skip(skip).find(|l| pred(l)) {
                return Ok(line.clone());
            }
            seen = state.dropped + state.lines.len();
            if state.closed {
                return Err("the stream closed (the process exited?)".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("no such line within {timeout:?}"));
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A process started by a test, in its own process group, with stdout and stderr captured.
/// Dropping it kills the whole group (so forked workers such as kamailio's go too) and
/// reaps the process.
pub struct ChildProcess {
    name: String,
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    status: Option<ExitStatus>,
}

impl ChildProcess {
    /// Starts `program` with `args`; `name` is used in failure messages.
    pub fn spawn<I, S>(name: &str, program: impl AsRef<OsStr>, args: I) -> ChildProcess
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args);
        ChildProcess::spawn_command(name, command)
    }

    /// Starts a prepared command (working directory, environment...). Its stdin is null
    /// and its stdout/stderr are captured; it gets its own process group.
    pub fn spawn_command(name: &str, mut command: Command) -> ChildProcess {
        use std::os::unix::process::CommandExt;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        let stdout = Lines::capture(child.stdout.take().expect("stdout is piped"));
        let stderr = Lines::capture(child.stderr.take().expect("stderr is piped"));
        ChildProcess {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn stdout(&self) -> &Arc<Lines> {
        &self.stdout
    }

    pub fn stderr(&self) -> &Arc<Lines> {
        &self.stderr
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            kill(self.pid(), signal).unwrap_or_else(|e| {
                panic!("sending {signal} to {} ({}): {e}", self.name, self.pid())
            });
        }
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL to its whole group if it lingers.
    /// Returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if self.try_wait().is_none() {
            let _ = kill(self.pid(), Signal::SIGTERM);
            if self.wait_timeout(TERM_GRACE).is_none() {
                let _ = killpg(self.pid(), Signal::SIGKILL);
            }
        }
        // Workers of the group that outlive their parent go too.
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let status = match self.status {
            Some(status) => status,
            None => self.child.wait().expect("waiting for a killed child"),
        };
        self.status = Some(status);
        status
    }

    /// Both streams' last lines, for failure messages.
    pub fn output_tail(&self, n: usize) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout.tail(n),
            self.name,
            self.stderr.tail(n)
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_waits_see_new_ones_after_the_cap() {
        let text: String = (0..MAX_LINES + 5).map(|i| format!("line {i}\n")).collect();
        let lines = Lines::capture(std::io::Cursor::new(text.into_bytes()));
        let last = format!("line {}", MAX_LINES + 4);
        assert_eq!(
            lines.wait_for(Duration::from_secs(10), |l| l == last),
            Ok(last.clone())
        );
        // The oldest lines were dropped; the stream is closed, so waiting for one fails.
        assert!(lines
            .wait_for(Duration::from_secs(10), |l| l == "line 0")
            .is_err());
        assert_eq!(lines.all().len(), MAX_LINES);
        assert_eq!(lines.tail(1), last);
    }
}
