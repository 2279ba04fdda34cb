//! The approval page in a real headless browser (Debian's Chromium driven by playwright-core,
//! `tests/browser/approve.js`): an agent's call is held by the filter in the real Envoy, appears
//! on the already open page without a reload, a click approves it, and the held call completes.
//! The person signs in first (`/login`, name and password from the approvers file), and the
//! decision is recorded under that name.
//! With UPDATE_SCREENSHOT=1 the page is saved as docs/approval-page.png (the README's picture).

use std::process::Command;
use std::time::Duration;

use e2e::http::post;
use e2e::{repo_root, Deployment, DeploymentOptions};
use serde_json::json;

mod approval_support;
use approval_support::{BROWSER_APPROVER, BROWSER_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_on_the_page_approves_the_held_call() {
    let service = approval_support::start();
    let policy = json!({"version": "1", "default": "deny",
        "approval": {"cluster": "approvals", "hold_seconds": 60},
        "tools": {"lark_send_text": {"action": "require_approval"}}});
    let d = Deployment::start(DeploymentOptions {
        notify_policy: policy.to_string(),
        stateless: true,
        approval_port: Some(service.port()),
        ..Default::default()
    });

    // The person opens the page first; the call arrives afterwards.
    let screenshot =
        std::env::var_os("UPDATE_SCREENSHOT").map(|_| repo_root().join("docs/approval-page.png"));
    let page_url = service.url("/");
    let mut browser = Command::new("node");
    browser
        .current_dir(repo_root().join("tests/browser"))
        .arg("approve.js")
        .args([
            &page_url,
            "lark_send_text",
            BROWSER_APPROVER,
            BROWSER_PASSWORD,
        ]);
    if let Some(path) = &screenshot {
        browser.arg(path);
    }
    // Its own time limits are 15 s (the page) and 10 s (Chromium): 60 s is a hang.
    let browser = tokio::task::spawn_blocking(move || {
        e2e::run_guarded("approve.js", browser, Duration::from_secs(60))
    });
    // Time to start Chromium and sign in (an Argon2 check in a debug build) before the call.
    tokio::time::sleep(Duration::from_millis(4000)).await;

    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "lark_send_text",
        "arguments": {"text": "Quarterly report is out: https://intranet.example/q3", "chat": "all-hands"}}});
    let answer = post(
        &d.url("notify"),
        body.to_string(),
        &[("x-agent-id", "report-bot")],
    )
    .await
    .json();
    let output = browser.await.expect("browser task");
    assert!(
        output.status.success(),
        "browser: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        answer.get("result").is_some(),
        "the held call did not complete: {answer}"
    );
    assert_eq!(d.upstream_tool_calls("notify", "lark_send_text"), 1);
    let decisions = service.get("/v1/decisions").await.json();
    assert_eq!(
        decisions["decisions"][0]["approver"], BROWSER_APPROVER,
        "{decisions}"
    );
}
