//! What happens to a policy Envoy hands the filter: accepted verbatim, or refused loudly with the
//! JSON path, and Envoy does not start with it. `mcp-policy check` says the same thing first.

use std::process::Command;

use e2e::{policy_cli_bin, Deployment, DeploymentOptions};

const BAD_WINDOW: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[{"counter":"wechat_mass_send_rate","window":"fortnight","max":30,"scope":"grant"}]}}}"#;
const EXPECTED: &str = r#"tools.wechat_mass_send.limits[0].window: expected "second", "minute", "hour", "day" or a positive integer number of seconds, got string "fortnight""#;

#[test]
fn envoy_refuses_to_start_with_an_invalid_policy_and_logs_the_path() {
    let error = match Deployment::try_start(DeploymentOptions {
        wechat_policy: BAD_WINDOW.to_owned(),
        ..Default::default()
    }) {
        Ok(_) => panic!("Envoy started with an invalid policy"),
        Err(e) => e,
    };
    assert!(error.contains("envoy exited (exit status: 1)"), "{error}");
    assert!(
        error.contains(&format!(
            "mcp-policy-filter[wechat]: invalid policy: {EXPECTED}"
        )),
        "{error}"
    );
    assert!(
        error.contains("Unable to create Wasm plugin wechat"),
        "{error}"
    );
}

#[test]
fn inconsistent_counters_are_refused_too() {
    let policy = r#"{"version":"1","tools":{
        "a":{"limits":[{"counter":"shared","window":"minute","max":30,"scope":"grant"}]},
        "b":{"limits":[{"counter":"shared","window":"minute","max":10,"scope":"grant"}]}}}"#;
    let error = Deployment::try_start(DeploymentOptions {
        notify_policy: policy.to_owned(),
        ..Default::default()
    })
    .err()
    .expect("must not start");
    assert!(error.contains("mcp-policy-filter[notify]: invalid policy: tools.b.limits[0]: counter \"shared\" is already defined at tools.a.limits[0]"), "{error}");
}

#[test]
fn the_seed_policies_load_and_log_a_summary() {
    let d = Deployment::start(DeploymentOptions::default());
    let log = d.wait_for_log("mcp-policy-filter[notify]: policy ok");
    assert!(
        log.contains("mcp-policy-filter[wechat]: policy ok: default deny, 1 tool rule(s)"),
        "{log}"
    );
    assert!(
        log.contains("mcp-policy-filter[notify]: policy ok: default deny, 1 tool rule(s)"),
        "{log}"
    );
}

#[test]
fn check_cli_agrees_with_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&good, e2e::sample_policy("wechat.json")).unwrap();
    std::fs::write(&bad, BAD_WINDOW).unwrap();

    let ok = Command::new(policy_cli_bin())
        .arg("check")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("policy ok: default deny, 1 tool rule(s) (0 deny), 1 counter(s)"),
        "{stdout}"
    );

    let refused = Command::new(policy_cli_bin())
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!("{}: invalid policy: {EXPECTED}", bad.display())
    );
}

#[test]
fn import_cli_converts_intercept_policies_the_filter_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = e2e::repo_root().join("tests/fixtures/intercept/stripe.yaml");
    let imported = Command::new(policy_cli_bin())
        .arg("import")
        .arg(&yaml)
        .output()
        .unwrap();
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&imported.stdout).expect("JSON on stdout");
    assert_eq!(json["default"], "allow", "Intercept's default, written out");
    let out = dir.path().join("stripe.json");
    std::fs::write(&out, &imported.stdout).unwrap();
    let checked = Command::new(policy_cli_bin())
        .arg("check")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "version: \"1\"\ntools:\n  t:\n    rules:\n      - name: r\n        action: maybe\n",
    )
    .unwrap();
    let refused = Command::new(policy_cli_bin())
        .arg("import")
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("tools.t.rules[0].action: expected one of \"evaluate\", \"deny\""));
}

#[test]
fn explain_cli_names_the_deciding_rule() {
    let policy = e2e::repo_root().join("envoy/examples/two-agents/wechat.json");
    let run = |args: &[&str]| {
        let out = Command::new(policy_cli_bin())
            .arg("explain")
            .arg(&policy)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let denied = run(&["--tool", "wechat_mass_send", "--identity", "support-agent"]);
    assert_eq!(
        (denied["decision"].as_str(), denied["rule"].as_str()),
        (Some("denied"), Some("grants.support.tools"))
    );
    let allowed = run(&[
        "--tool",
        "wechat_mass_send",
        "--identity",
        "campaign-agent",
        "--args",
        r#"{"openids":["o1"]}"#,
    ]);
    assert_eq!(allowed["decision"], "allowed");
    assert_eq!(allowed["charges"][0]["counter"], "wechat_mass_send_rate");
    assert_eq!(
        run(&[
            "--tool",
            "wechat_mass_delete",
            "--identity",
            "campaign-agent"
        ])["rule"],
        "tools.wechat_mass_delete.action"
    );
    assert_eq!(
        run(&["--tool", "wechat_get_followers"])["rule"],
        "identity.missing"
    );
}
