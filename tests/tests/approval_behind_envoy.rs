//! The approval service behind Envoy's jwt_authn, as shipped in `envoy/approvals-jwt.yaml`:
//! people approve through that Envoy with a JWT (made at test time by tests/clients/pki.py),
//! whose `sub` Envoy names in `x-approver`; the service, in header mode, believes that header
//! only from Envoy's source address, 127.0.0.2. A call held by the built filter in the real
//! Envoy completes once approved that way, recorded under the JWT's `sub`. No JWT, a header
//! forged straight to the service, a header forged next to a JWT, and an agent's own JWT for
//! its own call all fail to decide anything. `sample-deployment --approvers-from-jwt` serves the
//! same arrangement.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::http::{post, request, Response};
use e2e::{approval_service_bin, envoy_bin, repo_root, Deployment, DeploymentOptions};
use mcp_policy_sample::deployment::{
    free_port, read_until_line, start_approval_service, start_envoy, ChildGuard, EnvoyOptions,
    EnvoyProcess, EnvoyTemplate, ServerProcess,
};
use serde_json::{json, Value};

const TOOL: &str = "lark_send_text";
/// The agent's identity; pki.py also makes a JWT with this `sub`, for a person of that name.
const AGENT: &str = "alice";
/// What pki.py's tokens say (`iss`, `aud`).
const ISSUER: &str = "https://issuer.mcp-policy.test";
const AUDIENCE: &str = "mcp-servers";

fn policy(hold_seconds: u64) -> String {
    json!({"version": "1", "default": "deny",
           "approval": {"cluster": "approvals", "hold_seconds": hold_seconds, "valid_seconds": 600},
           "tools": {TOOL: {"action": "require_approval"}}})
    .to_string()
}

fn call(id: u64, text: &str) -> String {
    e2e::tool_call_body(id, TOOL, &json!({ "text": text }))
}

struct Setup {
    // Field order is drop order: the filter's Envoy, then the gateway, then the service.
    deployment: Deployment,
    _gateway: EnvoyProcess,
    gateway_port: u16,
    service: ServerProcess,
    tokens: Value,
    _dir: tempfile::TempDir,
}

/// A JWKS and JWTs signed by its key, from tests/clients/pki.py.
fn make_tokens(dir: &std::path::Path) -> Value {
    let mut pki = Command::new(repo_root().join(".venv/bin/python"));
    pki.arg(repo_root().join("tests/clients/pki.py")).arg(dir);
    let made = e2e::run_guarded("pki.py", pki, Duration::from_secs(120));
    assert!(
        made.status.success(),
        "pki.py: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tokens = std::fs::read_to_string(dir.join("tokens.json")).expect("tokens.json");
    serde_json::from_str(&tokens).expect("tokens JSON")
}

/// The service in header mode, as `sample-deployment --approvers-from-jwt` starts it: no
/// approvers file, so only a name Envoy gives it counts.
fn start_service(dir: &std::path::Path) -> ServerProcess {
    let options = [
        "--trust-identity-header",
        "x-approver",
        "--trusted-peer",
        "127.0.0.2",
        "--header-approvers-may-decide",
        "*:*",
    ]
    .map(String::from);
    let db = dir.join("approvals.sqlite3");
    start_approval_service(&approval_service_bin(), 0, &db, &options)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// envoy/approvals-jwt.yaml, rendered in front of the service on `service_port`.
fn start_gateway(dir: &std::path::Path, service_port: u16) -> (EnvoyProcess, u16) {
    let template = std::fs::read_to_string(repo_root().join("envoy/approvals-jwt.yaml"))
        .expect("envoy/approvals-jwt.yaml");
    let (port, admin_port) = (free_port().unwrap(), free_port().unwrap());
    let config = EnvoyTemplate::default()
        .set("APPROVALS_GATEWAY_PORT", port)
        .set("ADMIN_PORT", admin_port)
        .set("APPROVAL_PORT", service_port)
        .set("JWT_ISSUER", ISSUER)
        .set("JWT_AUDIENCE", AUDIENCE)
        .set("APPROVER_JWKS", dir.join("pki/jwks.json").display())
        .render(&template)
        .unwrap_or_else(|e| panic!("{e}"));
    let envoy = start_envoy(&EnvoyOptions {
        envoy_bin: envoy_bin(),
        config,
        work_dir: dir.join("gateway"),
        concurrency: 1,
        admin_port,
        log_to_stderr: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (envoy, port)
}

fn setup(hold_seconds: u64) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = make_tokens(&dir.path().join("pki"));
    let service = start_service(dir.path());
    let (gateway, gateway_port) = start_gateway(dir.path(), service.port);
    let deployment = Deployment::start(DeploymentOptions {
        notify_policy: policy(hold_seconds),
        stateless: true,
        approval_port: Some(service.port),
        ..Default::default()
    });
    Setup {
        deployment,
        _gateway: gateway,
        gateway_port,
        service,
        tokens,
        _dir: dir,
    }
}

/// `Authorization` with pki.py's JWT for `name` (or one of its bad tokens: `expired`, …).
fn bearer(s: &Setup, name: &str) -> String {
    let token = s.tokens[name].as_str();
    format!(
        "Bearer {}",
        token.unwrap_or_else(|| panic!("no token {name}"))
    )
}

impl Setup {
    fn gateway(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_port)
    }

    /// Straight to the service, from 127.0.0.1: not Envoy.
    fn direct(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.service.port)
    }

    /// The agent's call; with a short hold it comes back pending, with its approval id.
    async fn send(&self, id: u64, text: &str) -> Value {
        let url = self.deployment.url("notify");
        let response = post(&url, call(id, text), &[("x-agent-id", AGENT)]).await;
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }

    async fn held_id(&self, text: &str) -> String {
        let answer = self.send(1, text).await;
        assert_eq!(answer["error"]["code"], -32031, "not held: {answer}");
        let id = answer["error"]["data"]["approval_id"].as_str();
        id.expect("approval_id").to_owned()
    }

    async fn approve(&self, url: &str, id: &str, headers: &[(&str, &str)]) -> Response {
        let body = json!({"reason": "checked"}).to_string();
        post(&format!("{url}/v1/requests/{id}/approve"), body, headers).await
    }

    /// The request as carol sees it through the gateway.
    async fn request(&self, id: &str) -> Value {
        let carol = bearer(self, "carol");
        let url = self.gateway(&format!("/v1/requests/{id}"));
        let response = request("GET", &url, &[("authorization", &carol)]).await;
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }

    /// The pending request for `text`, once the held call has reached the service.
    async fn pending(&self, text: &str) -> Value {
        let carol = bearer(self, "carol");
        let url = self.gateway("/v1/requests?status=pending");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = request("GET", &url, &[("authorization", &carol)]).await;
            assert_eq!(listed.status, 200, "{listed:?}");
            let listed = listed.json();
            let found = listed["requests"].as_array().into_iter().flatten();
            if let Some(found) = found.clone().find(|r| r["arguments"]["text"] == text) {
                return found.clone();
            }
            assert!(Instant::now() < deadline, "not pending: {listed}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn ran(&self) -> u64 {
        self.deployment.upstream_tool_calls("notify", TOOL)
    }
}

/// Envoy's own 401 (jwt_authn), not the service's JSON one.
fn assert_refused_by_envoy(response: &Response, what: &str) {
    assert_eq!(response.status, 401, "{what}: {response:?}");
    assert!(response.body.starts_with("Jwt"), "{what}: {response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jwt_through_envoy_approves_a_held_call_as_its_sub() {
    let s = setup(20);
    let held = {
        let url = s.deployment.url("notify");
        tokio::spawn(async move { post(&url, call(1, "hello"), &[("x-agent-id", AGENT)]).await })
    };
    let pending = s.pending("hello").await;
    assert_eq!(pending["identity"], AGENT);
    assert_eq!(pending["may_approve"], true, "{pending}");
    let id = pending["id"].as_str().expect("id");

    let carol = bearer(&s, "carol");
    let approved = s
        .approve(&s.gateway(""), id, &[("authorization", &carol)])
        .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.json()["decided_by"], "carol");

    let answer = held.await.expect("task").json();
    assert!(answer.get("result").is_some(), "{answer}");
    assert_eq!(s.ran(), 1);
    let url = s.gateway("/v1/decisions");
    let decisions = request("GET", &url, &[("authorization", &carol)])
        .await
        .json();
    assert_eq!(
        decisions["decisions"][0]["approver"], "carol",
        "{decisions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_envoy_names_the_approver() {
    let s = setup(1);
    let id = s.held_id("hello").await;

    // Through Envoy without a valid JWT: refused by Envoy, whatever header comes along.
    let gateway = s.gateway("");
    let no_jwt = s.approve(&gateway, &id, &[]).await;
    assert_refused_by_envoy(&no_jwt, "no JWT");
    let forged = s.approve(&gateway, &id, &[("x-approver", "carol")]).await;
    assert_refused_by_envoy(&forged, "x-approver without a JWT");
    for bad in ["expired", "wrong_issuer"] {
        let token = bearer(&s, bad);
        let response = s.approve(&gateway, &id, &[("authorization", &token)]).await;
        assert_refused_by_envoy(&response, bad);
    }

    // Straight to the service from 127.0.0.1, which is not Envoy: the header counts for nothing.
    let direct = s
        .approve(&s.direct(""), &id, &[("x-approver", "carol")])
        .await;
    assert_eq!(direct.status, 401, "{direct:?}");
    assert!(direct.body.contains("not signed in"), "{direct:?}");
    assert_eq!(s.request(&id).await["status"], "pending");

    // A valid JWT without `sub` names nobody: a header forged next to it is not passed on.
    let anonymous = bearer(&s, "no_sub");
    let headers = [
        ("authorization", anonymous.as_str()),
        ("x-approver", "carol"),
    ];
    let nobody = s.approve(&gateway, &id, &headers).await;
    assert_eq!(nobody.status, 401, "{nobody:?}");
    assert!(nobody.body.contains("not signed in"), "{nobody:?}");
    assert_eq!(s.request(&id).await["status"], "pending");

    // A page on another site making carol's browser post here: refused, even with her JWT.
    let carol = bearer(&s, "carol");
    let cross_site = [
        ("authorization", carol.as_str()),
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ];
    let forged = s.approve(&gateway, &id, &cross_site).await;
    assert_eq!(forged.status, 403, "{forged:?}");
    assert_eq!(s.request(&id).await["status"], "pending");

    // A forged header next to carol's JWT: Envoy drops it, carol decides.
    let headers = [("authorization", carol.as_str()), ("x-approver", "mallory")];
    let approved = s.approve(&gateway, &id, &headers).await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.json()["decided_by"], "carol");

    let retried = s.send(2, "hello").await;
    assert!(retried.get("result").is_some(), "{retried}");
    assert_eq!(s.ran(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_cannot_approve_its_own_call_with_a_jwt_in_its_name() {
    let s = setup(1);
    let id = s.held_id("mine").await;
    let own = bearer(&s, AGENT);
    let response = s
        .approve(&s.gateway(""), &id, &[("authorization", &own)])
        .await;
    assert_eq!(response.status, 403, "{response:?}");
    assert!(
        response.body.contains("someone else must approve it"),
        "{response:?}"
    );
    assert_eq!(s.request(&id).await["status"], "pending");
    let retried = s.send(2, "mine").await;
    assert_eq!(
        retried["error"]["code"], -32031,
        "ran unapproved: {retried}"
    );
    assert_eq!(s.ran(), 0);
}

/// `sample-deployment --approvers-from-jwt` (`APPROVERS_JWKS=… make run`) puts the same Envoy in
/// front of the service and sends people there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sample_deployment_serves_approvals_behind_jwt_authn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = make_tokens(&dir.path().join("pki"));
    let ports: Vec<String> = (0..5).map(|_| free_port().unwrap().to_string()).collect();
    let (_launcher, banner) = start_launcher(dir.path(), &ports);
    let gateway = format!("http://127.0.0.1:{}", ports[3]);
    assert!(banner.contains(&format!("{gateway}/ ")), "{banner}");
    assert!(banner.contains("pki/jwks.json"), "{banner}");

    let url = format!("{gateway}/v1/requests");
    assert_refused_by_envoy(&request("GET", &url, &[]).await, "no JWT");
    let carol = format!("Bearer {}", tokens["carol"].as_str().expect("carol"));
    let listed = request("GET", &url, &[("authorization", &carol)]).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let direct = format!("http://127.0.0.1:{}/v1/requests", ports[2]);
    let forged = request("GET", &direct, &[("x-approver", "carol")]).await;
    assert_eq!(forged.status, 401, "{forged:?}");
}

/// The launcher on `ports` (listener, admin, approval service, gateway, gateway admin), stopped
/// by PID with everything it started; and its banner.
fn start_launcher(dir: &std::path::Path, ports: &[String]) -> (ChildGuard, String) {
    use std::os::unix::process::CommandExt;
    let errors = dir.join("launcher.stderr");
    let child = Command::new(e2e::sample_server_bin().with_file_name("sample-deployment"))
        .current_dir(repo_root())
        .args(["--listener-port", &ports[0], "--admin-port", &ports[1]])
        .args(["--approval-port", &ports[2]])
        .args(["--approvals-gateway-port", &ports[3]])
        .args(["--approvals-gateway-admin-port", &ports[4]])
        .arg("--approvers-from-jwt")
        .arg(dir.join("pki/jwks.json"))
        .arg("--work-dir")
        .arg(dir.join("build"))
        .arg("--envoy")
        .arg(envoy_bin())
        .args(["--build", e2e::filter_build().name()])
        .arg("--filter")
        .arg(e2e::filter_path())
        .arg("--server-bin")
        .arg(e2e::sample_server_bin())
        .arg("--approval-bin")
        .arg(approval_service_bin())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errors).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start sample-deployment");
    // SIGTERM first (it stops its own children), then its whole process group.
    let mut launcher =
        ChildGuard::new_group("sample-deployment", child).with_grace(Duration::from_secs(5));
    let stdout = launcher.take_stdout().expect("stdout");
    let banner = read_until_line(stdout, Duration::from_secs(120), |line| {
        line.contains("Ctrl-C stops everything")
    })
    .unwrap_or_else(|e| {
        let said = std::fs::read_to_string(&errors).unwrap_or_default();
        panic!("the launcher's banner: {e}\n{said}")
    });
    (launcher, banner)
}
