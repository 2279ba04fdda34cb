//! What happens to a policy Envoy hands the filter: accepted verbatim, or refused loudly with the
//! JSON path, and Envoy does not start with it. `mcp-policy check` says the same thing first.

use std::process::Command;

use e2e::{policy_cli_bin, Deployment, DeploymentOptions};
use mcp_policy_sample::deployment::{free_port, start_envoy, EnvoyOptions};

const BAD_WINDOW: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[{"counter":"wechat_mass_send_rate","window":"fortnight","max":30,"scope":"grant"}]}}}"#;
const EXPECTED: &str = r#"tools.wechat_mass_send.limits[0].window: expected "second", "minute", "hour", "day" or a positive integer number of seconds, got string "fortnight""#;

/// The filter configured inline in a static listener (the README's `http_filters` snippet).
fn start_static(policy: &str) -> Result<mcp_policy_sample::deployment::EnvoyProcess, String> {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          route_config: {{ virtual_hosts: [{{ name: mcp, domains: ["*"], routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200 }} }}] }}] }}
          http_filters:
          {filter}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        filter = e2e::filter_entry("wechat", policy)
    );
    start_envoy(&EnvoyOptions {
        envoy_bin: e2e::envoy_bin(),
        config,
        work_dir: dir.path().to_path_buf(),
        concurrency: 1,
        admin_port: admin,
        log_to_stderr: false,
    })
}

#[test]
fn with_static_configuration_envoy_refuses_to_start_and_logs_the_path() {
    let error = match start_static(BAD_WINDOW) {
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
    assert!(error.contains(e2e::envoy_refusal()), "{error}");
}

#[test]
fn inconsistent_counters_are_refused_too() {
    let policy = r#"{"version":"1","tools":{
        "a":{"limits":[{"counter":"shared","window":"minute","max":30,"scope":"grant"}]},
        "b":{"limits":[{"counter":"shared","window":"minute","max":10,"scope":"grant"}]}}}"#;
    let error = start_static(policy).err().expect("must not start");
    assert!(error.contains("mcp-policy-filter[wechat]: invalid policy: tools.b.limits[0]: counter \"shared\" is already defined at tools.a.limits[0]"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_ecds_an_invalid_policy_fails_closed_for_its_server_only() {
    // The sample deployment delivers each policy by ECDS: Envoy starts, the server whose policy
    // the filter refused has no filter configuration, and Envoy answers its requests with 500.
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: BAD_WINDOW.to_owned(),
        stateless: true,
        ..Default::default()
    });
    let refused = e2e::http::post(
        &d.url("wechat"),
        e2e::http::tools_call(1, "wechat_mass_send"),
        &[],
    )
    .await;
    assert_eq!(refused.status, 500);
    assert_eq!(
        d.upstream_posts("wechat"),
        0,
        "nothing reaches the server without a policy"
    );
    assert_eq!(
        d.envoy_stat("extension_config_discovery.http_filter.mcp-policy.wechat.config_fail"),
        1
    );
    let log = d.wait_for_log("invalid policy");
    assert!(
        log.contains(&format!(
            "mcp-policy-filter[wechat]: invalid policy: {EXPECTED}"
        )),
        "{log}"
    );
    // The other server, with a valid policy, serves.
    let fine = e2e::http::post(
        &d.url("notify"),
        e2e::http::tools_call(2, "ding_send_text"),
        &[],
    )
    .await;
    assert!(fine.body.contains("\"result\""), "{fine:?}");
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
        log.contains("mcp-policy-filter[notify]: policy ok: default deny, 2 tool rule(s)"),
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

    let ok = cli(|c| {
        c.arg("check").arg(&good);
    });
    assert_eq!(ok.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("policy ok: default deny, 1 tool rule(s) (0 deny), 1 counter(s)"),
        "{stdout}"
    );

    let refused = cli(|c| {
        c.arg("check").arg(&bad);
    });
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
    let imported = cli(|c| {
        c.arg("import").arg(&yaml);
    });
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
    let checked = cli(|c| {
        c.arg("check").arg(&out);
    });
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
    let refused = cli(|c| {
        c.arg("import").arg(&broken);
    });
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("tools.t.rules[0].action: expected one of \"evaluate\", \"deny\""));
}

#[test]
fn import_cli_translates_and_reports_where_intercept_decides_differently() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = e2e::repo_root().join("tests/fixtures/intercept/differences.yaml");
    let imported = cli(|c| {
        c.arg("import").arg(&yaml);
    });
    let stderr = String::from_utf8_lossy(&imported.stderr);
    assert_eq!(imported.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&imported.stdout).expect("JSON on stdout");
    // Go's regexp, written for the filter's: the Kelvin sign and the long s that Go's (?i) adds
    // to k and s, \Q…\E as escaped text, the class as the set Go means.
    assert_eq!(
        json["tools"]["push_files"]["rules"][1]["conditions"][0]["value"],
        r"(?i)^(feat|fix|[Kk\x{212A}]b)/v1\+[\-0-9A-Za-z\x{17F}\x{212A}]+$"
    );
    assert_eq!(
        json["tools"]["create_charge"]["rules"][1]["state"],
        serde_json::json!({"counter": "units", "window": "day", "increment_from": "args.quantity"}),
        "increment is dropped: Intercept charges increment_from"
    );
    let file = yaml.display();
    // Tools in name order: create_charge first.
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        warnings,
        [
            format!(
                "{file}: warning: tools.create_charge.rules[1].state.increment: 1 dropped: \
                 Intercept charges increment_from and ignores increment"
            ),
            format!(
                "{file}: warning: tools.push_files.rules[0].conditions[0]: a call whose \
                 args.branch is null passes this neq condition in Intercept and is denied by the \
                 filter, which counts a null argument as absent (a server may read null as its \
                 default, the very value the condition excludes)"
            ),
        ]
    );

    // What the filter then decides: a null branch and a missing amount are denied.
    let out = dir.path().join("differences.json");
    std::fs::write(&out, &imported.stdout).unwrap();
    let decide = |tool: &str, arguments: &str| -> serde_json::Value {
        let run = cli(|c| {
            c.arg("explain")
                .arg(&out)
                .args(["--tool", tool, "--args", arguments]);
        });
        serde_json::from_slice(&run.stdout).expect("JSON")
    };
    // `kb/` in any case, the Kelvin sign (a JSON escape here) included, as Go's (?i) reads it.
    for branch in ["KB/v1+x", r"\u212Ab/v1+x"] {
        let arguments = format!(r#"{{"branch":"{branch}"}}"#);
        assert_eq!(
            decide("push_files", &arguments)["decision"],
            "allowed",
            "{branch}"
        );
    }
    assert_eq!(
        decide("push_files", r#"{"branch":null}"#)["decision"],
        "denied"
    );
    let no_amount = decide("create_charge", r#"{"currency":"usd","quantity":1}"#);
    assert_eq!(no_amount["decision"], "denied", "{no_amount}");
    assert!(
        no_amount["message"].as_str().is_some_and(|m| m
            .contains("charges its counter by args.amount, which must be a number of at least 0")),
        "{no_amount}"
    );
}

#[test]
fn import_cli_refuses_what_would_decide_differently_without_a_word() {
    let dir = tempfile::tempdir().unwrap();
    // Refused, saying where and why.
    let refused = [
        (
            "          - {path: args.city, op: regex, value: '(?i)^zürich$'}",
            "tools.t.rules[0].conditions[0].value: cannot import the regex \"(?i)^zürich$\": ü at \
             character 7: under (?i) Go matches this character in every case Unicode gives it; the \
             filter folds ASCII letters only",
        ),
        (
            "          - {path: args.name, op: regex, value: '^\\p{L}+$'}",
            "tools.t.rules[0].conditions[0].value: cannot import the regex \"^\\\\p{L}+$\": \\p{L} at \
             character 2: a Unicode class; the filter's regular expressions have no Unicode tables",
        ),
        (
            "          - {path: args.role, op: eq, value: null}",
            "tools.t.rules[0].conditions[0].value: compares with null, which in Intercept equals a \
             null argument (its text is \"<nil>\"); the filter counts a null argument as absent and \
             has no such comparison: use exists",
        ),
        (
            "          - {path: state.t.units, op: lte, value: 10}\n        state: {counter: units, window: day, increment: -1}",
            "tools.t.rules[0].state.increment: -1 would lower the counter on every call, as \
             Intercept lets it; the filter refuses a negative amount, fixed or from an argument: a \
             call never gives budget back",
        ),
    ];
    for (index, (conditions, message)) in refused.into_iter().enumerate() {
        let policy = dir.path().join(format!("refused-{index}.yaml"));
        std::fs::write(
            &policy,
            format!(
                "version: \"1\"\ntools:\n  t:\n    rules:\n      - name: r\n        conditions:\n{conditions}\n"
            ),
        )
        .unwrap();
        let run = cli(|c| {
            c.arg("import").arg(&policy);
        });
        assert_eq!(run.status.code(), Some(1), "{conditions}");
        assert_eq!(
            String::from_utf8_lossy(&run.stderr).trim(),
            format!("{}: cannot import: {message}", policy.display())
        );
    }
}

#[test]
fn explain_cli_names_the_deciding_rule() {
    let policy = e2e::repo_root().join("envoy/examples/two-agents/wechat.json");
    let run = |args: &[&str]| {
        let out = cli(|c| {
            c.arg("explain").arg(&policy).args(args);
        });
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

/// `mcp-policy` with the arguments `args` adds, run to the end under a guard with a deadline.
fn cli(args: impl FnOnce(&mut Command)) -> std::process::Output {
    let mut command = Command::new(policy_cli_bin());
    args(&mut command);
    e2e::run_guarded("mcp-policy", command, std::time::Duration::from_secs(60))
}
