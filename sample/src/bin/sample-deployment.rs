//! `make run`: the sample deployment in the foreground. Starts the two sample MCP servers and
//! Envoy with the filter in front of them, prints the endpoints and an example, and stops
//! everything on Ctrl-C (or when any of the processes exits).
//!
//! sample-deployment --policy-dir DIR --envoy PATH --server-bin PATH
//!                   [--build wasm|native] [--filter PATH] [--approval-bin target/debug/approval-service] [--approval-port 9080]
//!                   [--listener-port 10000] [--admin-port 9901] [--concurrency 2] [--stateless]
//!                   [--template envoy/envoy.yaml] [--work-dir build]
//!                   [--approvers-from-jwt JWKS_FILE [--jwt-issuer ISS] [--jwt-audience AUD]
//!                    [--approvals-gateway-port 9081] [--approvals-gateway-admin-port 9902]]
//!
//! `--build` defaults to `FILTER_BUILD` (the .wasm when unset), `--filter` to that build's artefact
//! in dist/. The approval service keeps its decisions in `<work-dir>/approvals.sqlite3`; its
//! one approver, `demo`, gets a new password and API token each run (printed; their hashes in
//! `<work-dir>/approvers.json`).
//!
//! With `--approvers-from-jwt`, people approve through a second Envoy instead
//! (`envoy/approvals-jwt.yaml`, on the gateway port): its jwt_authn checks a JWT signed by a key
//! in JWKS_FILE and names its `sub` to the service in `x-approver`, which the service, in header
//! mode, believes only from that Envoy (127.0.0.2). Any `sub` may decide any call but its own.
//! The issuer and audience default to those of the tokens `tests/clients/pki.py` makes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use mcp_policy_engine::load_policy;
use mcp_policy_sample::deployment::launch::{write_approvers_file, Approver};
use mcp_policy_sample::deployment::{
    start_approval_service, start_envoy, start_sample_server, write_filter_config, ChildGuard,
    EnvoyOptions, EnvoyProcess, EnvoyTemplate, FilterBuild, ServerProcess,
};

struct Args {
    policy_dir: PathBuf,
    envoy: PathBuf,
    build: FilterBuild,
    filter: Option<PathBuf>,
    server_bin: PathBuf,
    approval_bin: PathBuf,
    approval_port: u16,
    template: PathBuf,
    work_dir: PathBuf,
    listener_port: u16,
    admin_port: u16,
    concurrency: u32,
    stateless: bool,
    /// People approve through Envoy's jwt_authn, with JWTs this JWKS verifies.
    approvers_jwks: Option<PathBuf>,
    jwt_issuer: String,
    jwt_audience: String,
    approvals_gateway_port: u16,
    approvals_gateway_admin_port: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        policy_dir: PathBuf::from("envoy/policies"),
        envoy: PathBuf::from(".venv/bin/envoy"),
        build: FilterBuild::from_env()?,
        filter: None,
        server_bin: PathBuf::from("target/debug/sample-mcp-server"),
        approval_bin: PathBuf::from("target/debug/approval-service"),
        approval_port: 9080,
        template: PathBuf::from("envoy/envoy.yaml"),
        work_dir: PathBuf::from("build"),
        listener_port: 10000,
        admin_port: 9901,
        concurrency: 2,
        stateless: false,
        approvers_jwks: None,
        jwt_issuer: "https://issuer.mcp-policy.test".into(),
        jwt_audience: "mcp-servers".into(),
        approvals_gateway_port: 9081,
        approvals_gateway_admin_port: 9902,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--stateless" {
            args.stateless = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        let port = |v: &str| {
            v.parse::<u16>()
                .map_err(|_| format!("{flag}: not a port: {v}"))
        };
        match flag.as_str() {
            "--policy-dir" => args.policy_dir = value.into(),
            "--envoy" => args.envoy = value.into(),
            "--build" => args.build = FilterBuild::parse(&value)?,
            "--filter" => args.filter = Some(value.into()),
            "--server-bin" => args.server_bin = value.into(),
            "--approval-bin" => args.approval_bin = value.into(),
            "--approval-port" => {
                args.approval_port = u16::try_from(number(&value)?).map_err(|e| e.to_string())?
            }
            "--template" => args.template = value.into(),
            "--work-dir" => args.work_dir = value.into(),
            "--listener-port" => {
                args.listener_port = u16::try_from(number(&value)?).map_err(|e| e.to_string())?
            }
            "--admin-port" => {
                args.admin_port = u16::try_from(number(&value)?).map_err(|e| e.to_string())?
            }
            "--concurrency" => args.concurrency = number(&value)?,
            "--approvers-from-jwt" => args.approvers_jwks = Some(value.into()),
            "--jwt-issuer" => args.jwt_issuer = value,
            "--jwt-audience" => args.jwt_audience = value,
            "--approvals-gateway-port" => args.approvals_gateway_port = port(&value)?,
            "--approvals-gateway-admin-port" => args.approvals_gateway_admin_port = port(&value)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// Refuse to start with a policy the filter would refuse, with the filter's own message.
fn read_policy(dir: &Path, file: &str) -> Result<String, String> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    load_policy(text.as_bytes()).map_err(|e| format!("{}: invalid policy: {e}", path.display()))?;
    Ok(text)
}

/// A demo secret: 16 random bytes, hex.
fn demo_secret() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The demo's approvers file: `demo` may decide every call. The service refuses to start
/// without approvers, so the demo has one, with secrets new each run.
fn demo_approvers(args: &Args) -> Result<(PathBuf, String, String), String> {
    let (password, token) = (demo_secret()?, demo_secret()?);
    let path = args.work_dir.join("approvers.json");
    let demo = Approver {
        name: "demo",
        password: Some(&password),
        token: Some(&token),
        may_decide: &[("*", "*")],
    };
    write_approvers_file(&args.approval_bin, &path, &[demo])?;
    Ok((path, password, token))
}

/// The approval service, the Envoy in front of it (with `--approvers-from-jwt`), and the
/// banner's lines on where people approve.
struct Approvals {
    service: ServerProcess,
    gateway: Option<EnvoyProcess>,
    banner: String,
}

fn start_approvals(args: &Args) -> Result<Approvals, String> {
    match &args.approvers_jwks {
        Some(jwks) => start_approvals_behind_jwt_authn(args, jwks),
        None => start_approvals_with_demo(args),
    }
}

fn start_approvals_with_demo(args: &Args) -> Result<Approvals, String> {
    let (approvers, password, token) = demo_approvers(args)?;
    let service = start_approval_service(
        &args.approval_bin,
        args.approval_port,
        &args.work_dir.join("approvals.sqlite3"),
        &["--approvers".into(), approvers.display().to_string()],
    )?;
    let banner = format!(
        "  approvals          http://127.0.0.1:{port}/   (a human approves or denies held calls, e.g. notify's lark_send_text)
                     sign in as demo, password {password}; API: -H 'authorization: Bearer {token}'",
        port = service.port
    );
    Ok(Approvals {
        service,
        gateway: None,
        banner,
    })
}

/// Header mode: the service believes `x-approver` only from 127.0.0.2, the source address of
/// the Envoy in front of it (envoy/approvals-jwt.yaml), which sets it from a verified JWT's `sub`.
fn start_approvals_behind_jwt_authn(args: &Args, jwks: &Path) -> Result<Approvals, String> {
    let jwks = std::fs::canonicalize(jwks).map_err(|e| format!("{}: {e}", jwks.display()))?;
    let gateway_url = format!("http://127.0.0.1:{}", args.approvals_gateway_port);
    // Port 0 keeps the launcher from adding a --public-url naming the service itself, where
    // nobody can authenticate: approve_url (handed to agents) and the accepted Origin are the
    // gateway's. The listen address is then the one below (the service takes the last --listen).
    let options = [
        "--listen",
        &format!("127.0.0.1:{}", args.approval_port),
        "--public-url",
        &gateway_url,
        "--trust-identity-header",
        "x-approver",
        "--trusted-peer",
        "127.0.0.2",
        "--header-approvers-may-decide",
        "*:*",
    ]
    .map(String::from);
    let db = args.work_dir.join("approvals.sqlite3");
    let service = start_approval_service(&args.approval_bin, 0, &db, &options)?;
    let gateway = start_approvals_gateway(args, &jwks, service.port)?;
    let banner = format!(
        "  approvals          {gateway_url}/   (a human approves or denies held calls, e.g. notify's lark_send_text)
                     through Envoy's jwt_authn ({work}/approvals-gateway/envoy.yaml, log envoy.log there):
                     -H 'authorization: Bearer <JWT>', a JWT signed by a key in {jwks}
                     with iss {iss}, aud {aud}; its sub is the approver (anyone but the caller)
                     the service itself: http://127.0.0.1:{port}/ (believes x-approver only from 127.0.0.2)",
        work = args.work_dir.display(),
        jwks = jwks.display(),
        iss = args.jwt_issuer,
        aud = args.jwt_audience,
        port = service.port,
    );
    Ok(Approvals {
        service,
        gateway: Some(gateway),
        banner,
    })
}

/// envoy/approvals-jwt.yaml (next to the main template), rendered and started.
fn start_approvals_gateway(
    args: &Args,
    jwks: &Path,
    service_port: u16,
) -> Result<EnvoyProcess, String> {
    let path = args.template.with_file_name("approvals-jwt.yaml");
    let template =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = EnvoyTemplate::default()
        .set("APPROVALS_GATEWAY_PORT", args.approvals_gateway_port)
        .set("ADMIN_PORT", args.approvals_gateway_admin_port)
        .set("APPROVAL_PORT", service_port)
        .set("JWT_ISSUER", &args.jwt_issuer)
        .set("JWT_AUDIENCE", &args.jwt_audience)
        .set("APPROVER_JWKS", jwks.display())
        .render(&template)?;
    start_envoy(&EnvoyOptions {
        envoy_bin: args.envoy.clone(),
        config,
        work_dir: args.work_dir.join("approvals-gateway"),
        concurrency: 1,
        admin_port: args.approvals_gateway_admin_port,
        log_to_stderr: false,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sample-deployment: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    // Signals are caught before the first child starts: a SIGTERM or Ctrl-C during start-up
    // then still ends in the loop below, and every guard stops its process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (mut terminate, mut interrupt) = {
        let _context = runtime.enter();
        let catch = |kind| tokio::signal::unix::signal(kind).map_err(|e| e.to_string());
        (
            catch(tokio::signal::unix::SignalKind::terminate())?,
            catch(tokio::signal::unix::SignalKind::interrupt())?,
        )
    };
    let wechat_policy = read_policy(&args.policy_dir, "wechat.json")?;
    let notify_policy = read_policy(&args.policy_dir, "notify.json")?;
    let mut wechat = start_sample_server(&args.server_bin, "wechat", args.stateless)?;
    let mut notify = start_sample_server(&args.server_bin, "notify", args.stateless)?;
    std::fs::create_dir_all(&args.work_dir)
        .map_err(|e| format!("{}: {e}", args.work_dir.display()))?;
    let mut approvals = start_approvals(&args)?;

    let template = std::fs::read_to_string(&args.template)
        .map_err(|e| format!("{}: {e}", args.template.display()))?;
    let filter = args
        .filter
        .clone()
        .unwrap_or_else(|| PathBuf::from(args.build.default_artifact()));
    let filter =
        std::fs::canonicalize(&filter).map_err(|e| format!("{}: {e}", filter.display()))?;
    let filter_template_path = args.template.with_file_name(args.build.filter_template());
    let filter_template = std::fs::read_to_string(&filter_template_path)
        .map_err(|e| format!("{}: {e}", filter_template_path.display()))?;
    let filter_dir =
        std::path::absolute(args.work_dir.join("filters")).map_err(|e| e.to_string())?;
    write_filter_config(
        &filter_template,
        &filter_dir,
        "wechat",
        &filter,
        &wechat_policy,
    )?;
    write_filter_config(
        &filter_template,
        &filter_dir,
        "notify",
        &filter,
        &notify_policy,
    )?;
    let config = EnvoyTemplate::default()
        .set("LISTENER_PORT", args.listener_port)
        .set("ADMIN_PORT", args.admin_port)
        .set("WECHAT_PORT", wechat.port)
        .set("NOTIFY_PORT", notify.port)
        .set("APPROVAL_PORT", approvals.service.port)
        .set("FILTER_CONFIG_DIR", filter_dir.display())
        .set("AUDIT_KEY", args.build.audit_key())
        .set(
            "ACCESS_LOG",
            std::path::absolute(args.work_dir.join("audit.log"))
                .map_err(|e| e.to_string())?
                .display(),
        )
        .render(&template)?;
    let mut envoy = start_envoy(&EnvoyOptions {
        envoy_bin: args.envoy.clone(),
        config,
        work_dir: args.work_dir.clone(),
        concurrency: args.concurrency,
        admin_port: args.admin_port,
        log_to_stderr: true,
    })?;

    let base = format!("http://127.0.0.1:{}", args.listener_port);
    println!(
        r#"
mcp-policy-filter sample deployment is up ({build} build {filter}; policies from {dir}/, rendered config {work}/envoy.yaml)

  wechat MCP server  {base}/wechat/mcp   (policy {dir}/wechat.json, upstream 127.0.0.1:{wp})
  notify MCP server  {base}/notify/mcp   (policy {dir}/notify.json, upstream 127.0.0.1:{np})
  upstream call counts (what really arrived): http://127.0.0.1:{wp}/stats  http://127.0.0.1:{np}/stats
{approvals}
  Envoy admin        http://127.0.0.1:{admin}/
  audit log          {work}/audit.log (Envoy access log; one JSON line per request)

Point any MCP client (Streamable HTTP) at one of the endpoints, with header x-agent-id: <your agent>.
Or try a denied call by hand; the filter answers and the server never sees it:

  curl -s {base}/wechat/mcp -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -d '{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"wechat_mass_delete","arguments":{{"msg_id":"1"}}}}}}'

Edit a policy file and it takes effect within a second, without a restart. Ctrl-C stops everything.
"#,
        build = args.build.name(),
        filter = filter.display(),
        dir = args.policy_dir.display(),
        work = args.work_dir.display(),
        wp = wechat.port,
        np = notify.port,
        admin = args.admin_port,
        approvals = approvals.banner,
    );

    runtime.block_on(async {
        let mut watched: Vec<(&str, PathBuf, Option<std::time::SystemTime>)> = ["wechat", "notify"]
            .into_iter()
            .map(|server| {
                let path = args.policy_dir.join(format!("{server}.json"));
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                (server, path, modified)
            })
            .collect();
        loop {
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            // Hot reload: a changed policy file that validates is handed to Envoy (ECDS); one
            // that does not is reported and the running policy stays.
            for (server, path, seen) in &mut watched {
                let modified = std::fs::metadata(&*path).and_then(|m| m.modified()).ok();
                if modified == *seen {
                    continue;
                }
                *seen = modified;
                let file = format!("{server}.json");
                match read_policy(&args.policy_dir, &file) {
                    Ok(text) => match write_filter_config(
                        &filter_template,
                        &filter_dir,
                        server,
                        &filter,
                        &text,
                    ) {
                        Ok(()) => println!(
                            "sample-deployment: {} changed: new policy handed to Envoy",
                            path.display()
                        ),
                        Err(e) => eprintln!("sample-deployment: {e}"),
                    },
                    Err(e) => {
                        eprintln!("sample-deployment: {e}; the previous policy keeps serving")
                    }
                }
            }
            let gateway = approvals.gateway.as_mut().map(|g| &mut g.guard);
            let guards: [Option<&mut ChildGuard>; 5] = [
                Some(&mut envoy.guard),
                Some(&mut wechat.guard),
                Some(&mut notify.guard),
                Some(&mut approvals.service.guard),
                gateway,
            ];
            for guard in guards.into_iter().flatten() {
                if let Some(status) = guard.try_exit_status() {
                    return Err(format!(
                        "{} exited ({status}); stopping everything",
                        guard.name()
                    ));
                }
            }
        }
    })
    // Guards drop here: Envoy and both servers are stopped by PID.
}
