//! Starting the sample servers and Envoy, and waiting until each is really ready.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{first_line_within, ChildGuard};

/// How long a server may take to print the line that says where it listens.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

/// A port free on 127.0.0.1 for a server about to be started on it.
///
/// The port is released before that server binds it. A port the kernel picked (`bind` to port
/// 0) is an ephemeral one, which any outgoing connection of a concurrent test may take in
/// between; so the port is chosen below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), where no outgoing connection takes ports, checked
/// free by binding it, and never handed out twice by this process. Where that range leaves no
/// room, the kernel picks.
pub fn free_port() -> std::io::Result<u16> {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    const LOWEST: u16 = 10_000;

    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let room = ephemeral_start.saturating_sub(LOWEST);
    if room >= 1_000 {
        let random = std::collections::hash_map::RandomState::new();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let handed_out = handed_out.get_or_insert_with(HashSet::new);
        for attempt in 0u32..200 {
            let mut hasher = random.build_hasher();
            hasher.write_u32(attempt);
            let offset = u16::try_from(hasher.finish() % u64::from(room)).unwrap_or(0);
            let port = LOWEST + offset;
            if handed_out.contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Minimal HTTP/1.1 GET against 127.0.0.1, for readiness and stats probes.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// Body of a `transfer-encoding: chunked` HTTP/1.1 response.
pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let len = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        // A length that is too long or splits a character ends the body (no panic on bad input).
        let (Some(chunk), Some(next)) = (after.get(..len), after.get(len..)) else {
            break;
        };
        if len == 0 {
            break;
        }
        out.push_str(chunk);
        rest = next.trim_start_matches("\r\n");
    }
    out
}

pub struct ServerProcess {
    pub guard: ChildGuard,
    pub port: u16,
}

/// Start `sample-mcp-server --server KIND --port 0` and read the port it bound.
pub fn start_sample_server(
    bin: &Path,
    kind: &str,
    stateless: bool,
) -> Result<ServerProcess, String> {
    start_sample_server_with(bin, kind, stateless, &[])
}

/// `start_sample_server`, with more options for the server (`--page-size 2`).
pub fn start_sample_server_with(
    bin: &Path,
    kind: &str,
    stateless: bool,
    options: &[String],
) -> Result<ServerProcess, String> {
    let mut command = Command::new(bin);
    command
        .args(["--server", kind, "--port", "0"])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if stateless {
        command.arg("--stateless");
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take();
    let mut guard = ChildGuard::new(format!("sample-mcp-server {kind}"), child);
    let line = match stdout {
        Some(stdout) => first_line_within(stdout, STARTUP_PATIENCE)
            .map_err(|e| format!("{kind} server did not report its port: {e}"))?,
        None => String::new(),
    };
    // "listening on http://127.0.0.1:PORT/mcp"
    let port = line
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            guard.stop();
            format!("{kind} server did not report its port (said {line:?})")
        })?;
    Ok(ServerProcess { guard, port })
}

/// Start `approval-service` on `127.0.0.1:port` (0: any free port) with its SQLite file at `db`,
/// and read the port it bound. `options` say who approves (the service refuses to start without:
/// `--approvers FILE`, see [`write_approvers_file`], or `--trust-identity-header NAME
/// --trusted-peer IP`) and anything else it takes (`--check-peer IP`).
pub fn start_approval_service(
    bin: &Path,
    port: u16,
    db: &Path,
    options: &[String],
) -> Result<ServerProcess, String> {
    let mut command = Command::new(bin);
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(db)
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if port != 0 {
        command
            .arg("--public-url")
            .arg(format!("http://127.0.0.1:{port}"));
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take();
    let mut guard = ChildGuard::new("approval-service", child);
    let line = match stdout {
        Some(stdout) => first_line_within(stdout, STARTUP_PATIENCE)
            .map_err(|e| format!("approval service did not report its port: {e}"))?,
        None => String::new(),
    };
    // "listening on http://127.0.0.1:PORT"
    let port = line
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| {
            guard.stop();
            format!("approval service did not report its port (said {line:?})")
        })?;
    Ok(ServerProcess { guard, port })
}

/// An approver of an approvers file written by [`write_approvers_file`]: the secrets in clear
/// here, their hashes in the file.
pub struct Approver<'a> {
    pub name: &'a str,
    /// To sign in on the page.
    pub password: Option<&'a str>,
    /// For `Authorization: Bearer` on the API.
    pub token: Option<&'a str>,
    /// `(server, tool)` pairs this approver may decide; `*` is any.
    pub may_decide: &'a [(&'a str, &'a str)],
}

/// Write the approvers file `approval-service --approvers` reads, with each secret hashed by
/// the service's own `hash-password` / `hash-token`.
pub fn write_approvers_file(
    bin: &Path,
    path: &Path,
    approvers: &[Approver<'_>],
) -> Result<(), String> {
    let mut entries = Vec::new();
    for approver in approvers {
        let mut entry = serde_json::Map::new();
        entry.insert("name".into(), approver.name.into());
        let may_decide = approver
            .may_decide
            .iter()
            .map(|(server, tool)| serde_json::json!({"server": server, "tool": tool}));
        entry.insert("may_decide".into(), may_decide.collect());
        if let Some(password) = approver.password {
            let hash = hashed_secret(bin, "hash-password", password)?;
            entry.insert("password_hash".into(), hash.into());
        }
        if let Some(token) = approver.token {
            let hash = hashed_secret(bin, "hash-token", token)?;
            entry.insert("token_sha256".into(), hash.into());
        }
        entries.push(entry);
    }
    let file = serde_json::json!({"approvers": entries});
    std::fs::write(path, file.to_string()).map_err(|e| format!("{}: {e}", path.display()))
}

/// `approval-service hash-password|hash-token` with `secret` on its stdin: what it printed.
fn hashed_secret(bin: &Path, subcommand: &str, secret: &str) -> Result<String, String> {
    let mut child = Command::new(bin)
        .arg(subcommand)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {} {subcommand}: {e}", bin.display()))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let mut guard = ChildGuard::new(format!("approval-service {subcommand}"), child);
    if let Some(mut stdin) = stdin {
        writeln!(stdin, "{secret}").map_err(|e| format!("{subcommand}: {e}"))?;
    }
    let line = match stdout {
        Some(stdout) => first_line_within(stdout, STARTUP_PATIENCE)
            .map_err(|e| format!("approval-service {subcommand}: {e}"))?,
        None => String::new(),
    };
    let deadline = Instant::now() + STARTUP_PATIENCE;
    let status = loop {
        if let Some(status) = guard.try_exit_status() {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(format!("approval-service {subcommand} did not exit"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    match line.trim() {
        hash if status.success() && !hash.is_empty() => Ok(hash.to_owned()),
        _ => Err(format!("approval-service {subcommand} failed ({status})")),
    }
}

#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub envoy_bin: PathBuf,
    /// Rendered configuration to run.
    pub config: String,
    /// Where the config and Envoy's log are written.
    pub work_dir: PathBuf,
    pub concurrency: u32,
    pub admin_port: u16,
    /// Envoy's own log lines also go to this process's stderr.
    pub log_to_stderr: bool,
}

pub struct EnvoyProcess {
    pub guard: ChildGuard,
    pub admin_port: u16,
    pub log_path: PathBuf,
}

impl EnvoyProcess {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Start Envoy and wait until its admin endpoint reports LIVE. If Envoy exits first (for
/// instance because the filter rejected its policy), the error carries Envoy's log.
pub fn start_envoy(options: &EnvoyOptions) -> Result<EnvoyProcess, String> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|e| format!("{}: {e}", options.work_dir.display()))?;
    let config_path = options.work_dir.join("envoy.yaml");
    let log_path = options.work_dir.join("envoy.log");
    std::fs::write(&config_path, &options.config)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut command = Command::new(&options.envoy_bin);
    command
        .arg("-c")
        .arg(&config_path)
        .args([
            "--concurrency",
            &options.concurrency.to_string(),
            "--disable-hot-restart",
            "-l",
            "info",
        ])
        // Logs reach the file within 200 ms (default 10 s), so tests can read what just happened.
        .args(["--file-flush-interval-msec", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if options.log_to_stderr {
        command.stderr(Stdio::inherit());
    } else {
        command
            .arg("--log-path")
            .arg(&log_path)
            .stderr(Stdio::null());
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", options.envoy_bin.display()))?;
    let mut envoy = EnvoyProcess {
        guard: ChildGuard::new("envoy", child),
        admin_port: options.admin_port,
        log_path,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = envoy.guard.try_exit_status() {
            return Err(format!(
                "envoy exited ({status}) before becoming ready; log:\n{}",
                envoy.log()
            ));
        }
        if matches!(http_get(options.admin_port, "/ready"), Ok((200, ref body)) if body.trim() == "LIVE")
        {
            return Ok(envoy);
        }
        if Instant::now() > deadline {
            return Err(format!("envoy not ready after 30 s; log:\n{}", envoy.log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
