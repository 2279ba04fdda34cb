//! A refusal answers with the request's `id` exactly as the client wrote it — a 30-digit integer,
//! an escaped string, a fraction, an exponent — so a client matching answers by id finds it;
//! the audit record carries the same text. Through the real Envoy with the built filter; none of
//! the refused calls reaches the upstream.

use e2e::http::{post, tools_call};
use e2e::{Deployment, DeploymentOptions};
use serde_json::Value;

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{"wechat_get_followers":{},
    "wechat_mass_delete":{"action":"deny","reason":"never"}}}"#;

const IDS: [&str; 9] = [
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "18446744073709551616",
    "1.0",
    "-0.5e-3",
    "2.5E+7",
    r#""req-\u00e9 \"7\" \/""#,
    r#""\ud83d\ude00""#,
    "0",
];

#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_audit_records_echo_the_id_exactly_as_sent() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    let echoed = |body: &str, id: &str| body.contains(&format!(r#""id":{id},"#));
    for id in IDS {
        let denied = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"wechat_mass_delete","arguments":{{"msg_id":1}}}}}}"#
        );
        let response = post(&url, denied.clone(), &[]).await;
        assert_eq!(
            (response.status, response.json()["error"]["code"].clone()),
            (200, Value::from(-32003)),
            "{response:?}"
        );
        assert!(echoed(&response.body, id), "{id}: {}", response.body);

        // In a batch, refused with an allowed call: each answer carries its own id.
        let batch = format!("[{denied},{}]", tools_call(2, "wechat_get_followers"));
        let response = post(&url, batch, &[]).await;
        assert!(echoed(&response.body, id), "{id}: {}", response.body);
        assert!(echoed(&response.body, "2"), "{}", response.body);

        // Headers that disagree with the body: 400, still with the id.
        let response = post(&url, denied, &[("mcp-method", "tools/list")]).await;
        assert_eq!(response.status, 400, "{response:?}");
        assert!(echoed(&response.body, id), "{id}: {}", response.body);
    }
    assert_eq!(
        d.upstream_posts("wechat"),
        0,
        "{}",
        d.upstream_stats("wechat")
    );

    // The audit records (read as text: parsed, a 30-digit integer would lose digits).
    d.audit_records(IDS.len() * 3);
    let access_log =
        std::fs::read_to_string(d.envoy.log_path.with_file_name("access.log")).expect("access log");
    let records: Vec<String> = access_log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["mcp_policy"].as_str().map(str::to_owned))
        .collect();
    for id in IDS {
        let call = format!(r#"{{"id":{id},"tool":"wechat_mass_delete""#);
        assert_eq!(
            records.iter().filter(|r| r.contains(&call)).count(),
            2,
            "{call} (alone and in the batch) in {records:#?}"
        );
    }
}
