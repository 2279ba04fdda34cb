//! A child process that is killed (by PID, never by name) when its guard is dropped, including
//! when a test fails or panics.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    /// The child leads its own process group (`CommandExt::process_group(0)`), and what it
    /// started (a browser under node, say) is killed with it.
    group: bool,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child: Some(child),
            group: false,
        }
    }

    /// For a child spawned with `process_group(0)`: stopping it kills its whole process group,
    /// by the group's id (the child's PID), so no grandchild outlives the guard.
    pub fn new_group(name: impl Into<String>, child: Child) -> Self {
        let mut guard = ChildGuard::new(name, child);
        guard.group = true;
        guard
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

    pub fn stop(&mut self) {
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
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
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
