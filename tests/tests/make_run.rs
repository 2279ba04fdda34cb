//! The `make run` deployment (the `sample-deployment` launcher) with a seed-format policy in a
//! POLICY_DIR, driven by an MCP agent that is not part of this repo: the official Python SDK.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{envoy_bin, filter_path, repo_root, sample_server_bin, wait_for_window_room};
use mcp_policy_sample::deployment::{free_port, http_get, read_until_line, ChildGuard};
use serde_json::{json, Value};

fn python() -> PathBuf {
    std::env::var_os("PYTHON_MCP")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

#[test]
fn a_policy_dir_is_enforced_for_the_python_sdk_agent() {
    let policies = tempfile::tempdir().unwrap();
    // The seed document verbatim for wechat; the same format for notify, with an hour window.
    std::fs::write(
        policies.path().join("wechat.json"),
        e2e::sample_policy("wechat.json"),
    )
    .unwrap();
    std::fs::write(
        policies.path().join("notify.json"),
        r#"{"version":"1","default":"deny","tools":{"ding_send_text":{"limits":[{"counter":"ding_send_text_rate","window":"hour","max":3,"scope":"grant"}]},
            "lark_send_text":{"action":"deny","reason":"Lark is being retired; use ding_send_text"}}}"#,
    )
    .unwrap();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let launcher_bin = sample_server_bin().with_file_name("sample-deployment");
    let child = Command::new(launcher_bin)
        .current_dir(repo_root())
        .args(["--policy-dir", &policies.path().display().to_string()])
        .args([
            "--listener-port",
            &port.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .args([
            "--work-dir",
            &policies.path().join("build").display().to_string(),
        ])
        .args([
            "--envoy",
            &envoy_bin().display().to_string(),
            "--build",
            e2e::filter_build().name(),
            "--filter",
            &filter_path().display().to_string(),
        ])
        .args(["--server-bin", &sample_server_bin().display().to_string()])
        .args([
            "--approval-bin",
            &e2e::approval_service_bin().display().to_string(),
            "--approval-port",
            &free_port().unwrap().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start sample-deployment");
    // The launcher cleans up its own children on SIGTERM, so it is stopped with SIGTERM (by
    // PID); if it has not exited within 5 s, it is killed with everything it started (its own
    // process group).
    let mut launcher =
        ChildGuard::new_group("sample-deployment", child).with_grace(Duration::from_secs(5));
    let stdout = launcher.take_stdout().expect("stdout");
    let stderr = launcher.take_stderr().expect("stderr");
    // What the launcher (and Envoy, whose log it passes on) reports, kept for the assertions;
    // read continuously so neither ever blocks on a full pipe.
    let reported = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    std::thread::spawn({
        let reported = reported.clone();
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut text) = reported.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        }
    });
    let banner = read_until_line(stdout, Duration::from_secs(120), |line| {
        line.contains("Ctrl-C stops everything")
    })
    .unwrap_or_else(|e| {
        panic!(
            "the launcher's banner: {e}\n{}",
            reported.lock().map(|r| r.clone()).unwrap_or_default()
        )
    });
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/notify/mcp")),
        "{banner}"
    );
    let notify_upstream: u16 = banner
        .split("notify.json, upstream 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no notify upstream port in:\n{banner}"));

    wait_for_window_room(3600, 60);
    let calls = json!([
        ["ding_send_text", {"text": "1"}], ["ding_send_text", {"text": "2"}], ["ding_send_text", {"text": "3"}],
        ["ding_send_text", {"text": "4"}], ["lark_send_text", {"text": "x"}], ["wework_send_text", {"text": "y"}]
    ]);
    let mut agent = Command::new(python());
    agent
        .arg(repo_root().join("tests/clients/python_agent.py"))
        .arg(format!("http://127.0.0.1:{port}/notify/mcp"))
        .arg("py-agent")
        .arg(calls.to_string());
    let output = e2e::run_guarded("python_agent.py", agent, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "agent failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();

    // Only what the policy lets this agent call is listed (lark is denied, the rest unlisted).
    assert_eq!(steps[0]["tools"], json!(["ding_send_text"]), "{}", steps[0]);
    for step in &steps[1..4] {
        assert_eq!(step["ok"], true, "{step}");
    }
    assert_eq!(
        (
            steps[4]["code"].clone(),
            steps[4]["data"]["counter"].clone()
        ),
        (json!(-32029), json!("ding_send_text_rate")),
        "{}",
        steps[4]
    );
    assert_eq!(steps[5]["message"], "Tool \"lark_send_text\" is not allowed by policy: Lark is being retired; use ding_send_text");
    assert_eq!(
        steps[6]["data"]["reason"],
        "the policy denies every tool it does not list (default: deny)"
    );

    let (_, stats) = http_get(notify_upstream, "/stats").expect("stats");
    let stats: Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(stats["tool_calls"], json!({"ding_send_text": 3}), "{stats}");

    // Hot reload: editing a policy file in POLICY_DIR takes effect without a restart...
    let wework = |id: u64| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"wework_send_text","arguments":{{"text":"x"}}}}}}"#
        );
        let request = format!(
            "POST /notify/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nX-Agent-Id: py-agent\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        e2e::http::raw_exchange(port, request.as_bytes())
    };
    assert!(wework(1).body.contains("not allowed by policy"));
    std::fs::write(
        policies.path().join("notify.json"),
        r#"{"version":"1","default":"deny","tools":{"ding_send_text":{},"wework_send_text":{}}}"#,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wework(2).body.contains("not allowed by policy") {
        assert!(
            std::time::Instant::now() < deadline,
            "the edited policy never took effect"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ...and a broken edit is refused by the launcher, never reaching Envoy: the previous policy
    // keeps serving.
    std::fs::write(
        policies.path().join("notify.json"),
        r#"{"version":"1","default":"dney"}"#,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refusal = "notify.json: invalid policy: default: expected";
    while !reported.lock().unwrap().contains(refusal) {
        assert!(
            std::time::Instant::now() < deadline,
            "the launcher never reported the broken edit:\n{}",
            reported.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = reported.lock().unwrap().clone();
    let line = report
        .lines()
        .find(|l| l.contains(refusal))
        .unwrap_or_default();
    assert!(
        line.ends_with("the previous policy keeps serving"),
        "{line}"
    );
    assert!(
        !wework(3).body.contains("not allowed by policy"),
        "still the edited policy"
    );
    assert_eq!(
        e2e::envoy_stat(
            admin,
            "extension_config_discovery.http_filter.mcp-policy.notify.config_fail"
        ),
        0,
        "the broken policy never reached Envoy"
    );
}
