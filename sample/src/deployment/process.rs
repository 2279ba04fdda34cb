//! A child process that is killed (by PID, never by name) when its guard is dropped, including
//! when a test fails or panics. Every program and test here that starts a child holds it in a
//! [`ChildGuard`], so stopping and reaping is written once.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    /// The child leads its own process group (`CommandExt::process_group(0)`), and what it
    /// started (a browser under node, say) is killed with it.
    group: bool,
    /// Stopping sends SIGTERM first and waits this long for the child to exit on its own (a
    /// child that cleans up after itself on SIGTERM), before killing it.
    grace: Option<Duration>,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child: Some(child),
            group: false,
            grace: None,
        }
    }

    /// For a child spawned with `process_group(0)`: stopping it kills its whole process group,
    /// by the group's id (the child's PID), so no grandchild outlives the guard.
    pub fn new_group(name: impl Into<String>, child: Child) -> Self {
        let mut guard = ChildGuard::new(name, child);
        guard.group = true;
        guard
    }

    /// Stopping first asks the child to exit (SIGTERM) and gives it `grace` to do so; only a
    /// child still running then is killed (with its group, for [`ChildGuard::new_group`]).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The child's piped stdout, taken once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// The child's piped stderr, taken once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` once the process has exited on its own.
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM (by PID), then the exit status once the child has exited, within `patience`.
    /// A child that has already exited is not signalled (its PID may be another process's now).
    /// Once it has exited the guard holds nothing; if it has not, the guard still kills it.
    pub fn terminate(&mut self, patience: Duration) -> Result<ExitStatus, String> {
        let name = &self.name;
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{name} was already stopped"));
        };
        let exited = |child: &mut Child| {
            child
                .try_wait()
                .map_err(|e| format!("waiting for {name}: {e}"))
        };
        if let Some(status) = exited(child)? {
            self.child = None;
            return Ok(status);
        }
        let pid = child.id();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        if !sent.is_ok_and(|s| s.success()) {
            return Err(format!("kill -TERM {pid} ({name}) failed"));
        }
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = exited(child)? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} did not exit within {patience:?} of SIGTERM"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the child now (after its grace, if it has one) and reap it.
    pub fn stop(&mut self) {
        if let Some(grace) = self.grace {
            // A child that exits on SIGTERM has stopped what it started itself.
            if self.child.is_some() && self.terminate(grace).is_ok() {
                return;
            }
        }
        if let Some(mut child) = self.child.take() {
            if self.group {
                kill_group(child.id());
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGKILL to every process in the group `pgid` (by its id, never by name).
pub fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a child writes to `output` up to and including the first line for which `done` holds,
/// or an error if no such line comes within `patience` (a child that hangs without a word must
/// fail the caller, not stall it). The rest of the output is drained on the reading thread, so
/// the child never blocks on a full pipe or dies writing to a closed one.
pub fn read_until_line(
    output: impl Read + Send + 'static,
    patience: Duration,
    done: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(output);
        let mut text = String::new();
        let mut line = String::new();
        let mut answer = Some(tx);
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(tx) = answer.take() {
                text.push_str(&line);
                if done(line.trim_end()) {
                    let _ = tx.send(Ok(std::mem::take(&mut text)));
                } else {
                    answer = Some(tx);
                }
            }
        }
        if let Some(tx) = answer {
            let _ = tx.send(Err(format!("output ended first (said {text:?})")));
        }
    });
    rx.recv_timeout(patience)
        .map_err(|_| format!("no such line within {patience:?}"))?
}

/// The first line a child writes to `output` (see [`read_until_line`]).
pub fn first_line_within(
    output: impl Read + Send + 'static,
    patience: Duration,
) -> Result<String, String> {
    read_until_line(output, patience, |_| true)
}
