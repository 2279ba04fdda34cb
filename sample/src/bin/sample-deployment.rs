//! `make run`: the sample deployment in the foreground. Starts the two sample MCP servers and
//! Envoy with the filter in front of them, prints the endpoints and an example, and stops
//! everything on Ctrl-C (or when any of the processes exits).
//!
//! sample-deployment --policy-dir DIR --envoy PATH --server-bin PATH
//!                   [--build wasm|native] [--filter PATH] [--approval-bin target/debug/approval-service] [--approval-port 9080]
//!                   [--listener-port 10000] [--admin-port 9901] [--concurrency 2] [--stateless]
//!                   [--template envoy/envoy.yaml] [--work-dir build]
//!
//! `--build` defaults to `FILTER_BUILD` (the .wasm when unset), `--filter` to that build's artefact
//! in dist/. The approval service keeps its decisions in `<work-dir>/approvals.sqlite3`; its
//! one approver, `demo`, gets a new password and API token each run (printed; their hashes in
//! `<work-dir>/approvers.json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use mcp_policy_engine::load_policy;
use mcp_policy_sample::deployment::launch::{write_approvers_file, Approver};
use mcp_policy_sample::deployment::{
    start_approval_service, start_envoy, start_sample_server, write_filter_config, EnvoyOptions,
    EnvoyTemplate, FilterBuild,
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
    let (approvers, demo_password, demo_token) = demo_approvers(&args)?;
    let mut approvals = start_approval_service(
        &args.approval_bin,
        args.approval_port,
        &args.work_dir.join("approvals.sqlite3"),
        &["--approvers".into(), approvers.display().to_string()],
    )?;

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
        .set("APPROVAL_PORT", approvals.port)
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
  approvals          http://127.0.0.1:{ap}/   (a human approves or denies held calls, e.g. notify's lark_send_text)
                     sign in as demo, password {demo_password}; API: -H 'authorization: Bearer {demo_token}'
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
        ap = approvals.port,
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
            for guard in [
                &mut envoy.guard,
                &mut wechat.guard,
                &mut notify.guard,
                &mut approvals.guard,
            ] {
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
