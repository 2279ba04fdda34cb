//! Replicated gateways: several Envoys running `envoy/gateway.yaml`, sharing limits through the
//! rate-limit service `ratelimit-redis`, which counts in a real `redis-server`. Every process is
//! started on free ports and stopped by PID when its guard drops.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_policy_sample::deployment::{
    first_line_within, free_port, start_envoy, ChildGuard, EnvoyOptions, EnvoyProcess,
    EnvoyTemplate,
};

use crate::{artifact, envoy_bin, repo_root};

pub fn redis_server_bin() -> PathBuf {
    artifact("REDIS_SERVER_BIN", "/usr/bin/redis-server")
}
pub fn ratelimit_redis_bin() -> PathBuf {
    artifact("RATELIMIT_REDIS_BIN", "target/debug/ratelimit-redis")
}

pub struct Redis {
    pub guard: ChildGuard,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port().expect("free port");
        Self::start_on(port)
    }

    /// On a given port: a restarted Redis comes back where the service expects it.
    pub fn start_on(port: u16) -> Redis {
        let child = Command::new(redis_server_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        let guard = ChildGuard::new("redis-server", child);
        wait_for_port(port, "redis-server");
        Redis { guard, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

pub struct RateLimitService {
    pub guard: ChildGuard,
    pub port: u16,
}

impl RateLimitService {
    pub fn start(redis_url: &str) -> RateLimitService {
        let mut child = Command::new(ratelimit_redis_bin())
            .args(["--listen", "127.0.0.1:0", "--redis", redis_url])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ratelimit-redis");
        let stdout = child.stdout.take();
        let guard = ChildGuard::new("ratelimit-redis", child);
        let line = stdout
            .map(|stdout| first_line_within(stdout, Duration::from_secs(30)))
            .transpose()
            .unwrap_or_else(|e| panic!("ratelimit-redis did not report its port: {e}"))
            .unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("ratelimit-redis did not report its port (said {line:?})"));
        RateLimitService { guard, port }
    }
}

/// One gateway replica: an Envoy with `envoy/gateway.yaml` in front of `upstream_port`.
pub struct Gateway {
    pub envoy: EnvoyProcess,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn start(policy: &str, upstream_port: u16, ratelimit_port: u16) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port().expect("free port");
        let admin_port = free_port().expect("free port");
        let template = std::fs::read_to_string(repo_root().join("envoy/gateway.yaml"))
            .expect("envoy/gateway.yaml");
        let config = EnvoyTemplate::default()
            .set("LISTENER_PORT", port)
            .set("ADMIN_PORT", admin_port)
            .set("UPSTREAM_PORT", upstream_port)
            .set("RATELIMIT_PORT", ratelimit_port)
            .set("POLICY_FILTER", crate::filter_entry("wechat", policy))
            .set("AUDIT_KEY", crate::audit_key())
            .set("ACCESS_LOG", dir.path().join("access.log").display())
            .set_policy("POLICY", policy)
            .render(&template)
            .unwrap_or_else(|e| panic!("{e}"));
        let envoy = start_envoy(&EnvoyOptions {
            envoy_bin: envoy_bin(),
            config,
            work_dir: dir.path().to_path_buf(),
            concurrency: 2,
            admin_port,
            log_to_stderr: false,
        })
        .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        Gateway {
            envoy,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn stat(&self, name: &str) -> u64 {
        crate::envoy_stat(self.envoy.admin_port, name)
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
