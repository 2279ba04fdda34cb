//! Shadow mode through the real Envoy with the built filter: on the whole policy (wechat) and on
//! single tool entries (notify). What the policy would refuse is forwarded — the upstream runs
//! it — audited as `would_deny` with the reason and rule, and counted as `would_deny` on Envoy's
//! metrics; tools/list answers keep the tools shadow covers.

use e2e::http::post;
use e2e::{tool_call_body, Deployment, DeploymentOptions};
use serde_json::{json, Value};

/// Policy-level shadow: a denied tool, a hidden tool and an unlisted tool under default deny.
const WECHAT_SHADOW: &str = r#"{"version":"1","default":"deny","shadow":true,
  "hide":["wechat_mass_preview"],
  "tools":{"wechat_mass_delete":{"action":"deny","reason":"deleting needs a human"},
           "wechat_get_followers":{}}}"#;

/// Tool-level shadow on `ding_send_text` (denied) and `wework_send_text` (a failing rule), and on
/// `lark_send_text` (hidden); the rest of the policy is enforced.
const NOTIFY_TOOL_SHADOW: &str = r#"{"version":"1","default":"deny",
  "hide":["lark_send_text","wework_send_markdown"],
  "tools":{"ding_send_text":{"action":"deny","reason":"ding is being retired","shadow":true},
           "lark_send_text":{"shadow":true},
           "wework_send_markdown":{},
           "wework_send_text":{"shadow":true,"rules":[{"name":"short","on_deny":"texts of at most 5 characters",
               "conditions":[{"path":"args.text","op":"regex","value":"^.{0,5}$"}]}]}}}"#;

fn deployment() -> Deployment {
    Deployment::start(DeploymentOptions {
        wechat_policy: WECHAT_SHADOW.into(),
        notify_policy: NOTIFY_TOOL_SHADOW.into(),
        stateless: true,
        ..Default::default()
    })
}

/// The audit record of the request whose (only) call has JSON-RPC id `id`.
fn record_of(records: &[Value], id: u64) -> Value {
    records
        .iter()
        .map(|l| l["mcp_policy"].clone())
        .find(|r| r["calls"][0]["id"] == id)
        .unwrap_or_else(|| panic!("no audit record for call {id}: {records:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_forwards_what_it_would_deny_audits_and_counts_it() {
    let d = deployment();
    let agent = [("x-agent-id", "agent-1")];
    /// A call, the label its metric carries, the decision expected, whether the upstream runs
    /// it, and what the audit record's reason and rule say.
    struct Case {
        server: &'static str,
        tool: &'static str,
        arguments: Value,
        label: &'static str,
        decision: &'static str,
        forwarded: bool,
        reason: &'static str,
        rule: &'static str,
    }
    let cases = [
        // Policy-level shadow: an explicit deny, a hidden tool, an unlisted tool: all run.
        Case {
            server: "wechat",
            tool: "wechat_mass_delete",
            arguments: json!({"msg_id": 5}),
            label: "wechat_mass_delete",
            decision: "would_deny",
            forwarded: true,
            reason: "deleting needs a human",
            rule: "tools.wechat_mass_delete.action",
        },
        Case {
            server: "wechat",
            tool: "wechat_mass_preview",
            arguments: json!({"openid": "oUser_0001", "msg_type": "text", "content": "c"}),
            label: "wechat_mass_preview",
            decision: "would_deny",
            forwarded: true,
            reason: "hidden by policy",
            rule: "hide",
        },
        Case {
            server: "wechat",
            tool: "wechat_get_user_info",
            arguments: json!({"openid": "oSample_follower_0001"}),
            label: "other",
            decision: "would_deny",
            forwarded: true,
            reason: "default: deny",
            rule: "default",
        },
        // ...and what the policy allows is plain allowed.
        Case {
            server: "wechat",
            tool: "wechat_get_followers",
            arguments: json!({}),
            label: "wechat_get_followers",
            decision: "allowed",
            forwarded: true,
            reason: "",
            rule: "tools.wechat_get_followers",
        },
        // Tool-level shadow: the shadowed deny, hidden tool and failing rule run...
        Case {
            server: "notify",
            tool: "ding_send_text",
            arguments: json!({"text": "hi"}),
            label: "ding_send_text",
            decision: "would_deny",
            forwarded: true,
            reason: "ding is being retired",
            rule: "tools.ding_send_text.action",
        },
        Case {
            server: "notify",
            tool: "lark_send_text",
            arguments: json!({"text": "hi"}),
            label: "lark_send_text",
            decision: "would_deny",
            forwarded: true,
            reason: "hidden by policy",
            rule: "hide",
        },
        Case {
            server: "notify",
            tool: "wework_send_text",
            arguments: json!({"text": "far too long"}),
            label: "wework_send_text",
            decision: "would_deny",
            forwarded: true,
            reason: "texts of at most 5 characters (tools.wework_send_text.rules[0])",
            rule: "tools.wework_send_text.rules[0]",
        },
        // ...while the tools without the flag stay enforced: hidden, and unlisted.
        Case {
            server: "notify",
            tool: "wework_send_markdown",
            arguments: json!({"text": "hi"}),
            label: "wework_send_markdown",
            decision: "denied",
            forwarded: false,
            reason: "hidden by policy",
            rule: "hide",
        },
        Case {
            server: "notify",
            tool: "ding_send_markdown",
            arguments: json!({"title": "T", "text": "hi"}),
            label: "other",
            decision: "denied",
            forwarded: false,
            reason: "default: deny",
            rule: "default",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let id = i as u64 + 1;
        assert_eq!(
            d.decisions_counted(case.server, case.label, case.decision),
            None,
            "no {} counted for {} yet",
            case.decision,
            case.tool
        );
        let before = d.upstream_tool_calls(case.server, case.tool);
        let response = post(
            &d.url(case.server),
            tool_call_body(id, case.tool, &case.arguments),
            &agent,
        )
        .await;
        assert_eq!(response.status, 200, "{response:?}");
        let answer = response.json();
        let after = d.upstream_tool_calls(case.server, case.tool);
        if case.forwarded {
            assert!(
                answer.get("result").is_some(),
                "{} should be forwarded: {answer}",
                case.tool
            );
            assert_eq!(after, before + 1, "the upstream ran {}", case.tool);
        } else {
            assert_eq!(answer["error"]["code"], -32003, "{} {answer}", case.tool);
            assert_eq!(after, before, "the upstream never saw {}", case.tool);
        }
        assert_eq!(
            d.decisions_counted(case.server, case.label, case.decision),
            Some(1),
            "{} counted as {}",
            case.tool,
            case.decision
        );
    }

    let records = d.audit_records(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let record = record_of(&records, i as u64 + 1);
        let call = &record["calls"][0];
        assert_eq!(
            (
                call["tool"].clone(),
                call["decision"].clone(),
                call["rule"].clone()
            ),
            (json!(case.tool), json!(case.decision), json!(case.rule)),
            "{record}"
        );
        assert_eq!(
            record["outcome"],
            if case.forwarded {
                "forwarded"
            } else {
                "refused"
            },
            "{record}"
        );
        let reason = call["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(case.reason),
            "{}: reason {reason:?} lacks {:?}",
            case.tool,
            case.reason
        );
    }
    // Every would-deny ran upstream; nothing enforced did.
    let ran = d.upstream_stats("wechat")["tool_calls_total"]
        .as_u64()
        .unwrap()
        + d.upstream_stats("notify")["tool_calls_total"]
            .as_u64()
            .unwrap();
    let forwarded = cases.iter().filter(|c| c.forwarded).count() as u64;
    assert_eq!(ran, forwarded);
}

fn names(answer: &Value) -> Vec<String> {
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().expect("a tool name").to_owned())
        .collect();
    names.sort();
    names
}

/// tools/list through Envoy against the upstream's own answer (asked directly, not through
/// Envoy): a policy in shadow lists everything the server offers, hidden, denied and unlisted
/// tools included; tool-level shadow keeps exactly the shadowed tools of those the rest of the
/// policy removes.
#[tokio::test(flavor = "multi_thread")]
async fn tools_list_is_unchanged_in_shadow_mode() {
    let d = deployment();
    let list = r#"{"jsonrpc":"2.0","id":"l","method":"tools/list","params":{}}"#;
    for (server, port) in [("wechat", d.wechat.port), ("notify", d.notify.port)] {
        let direct = post(&format!("http://127.0.0.1:{port}/mcp"), list, &[]).await;
        assert_eq!(direct.status, 200, "{direct:?}");
        let offered = names(&direct.json());
        let through = post(&d.url(server), list, &[("x-agent-id", "agent-1")]).await;
        assert_eq!(through.status, 200, "{through:?}");
        let listed = names(&through.json());
        match server {
            "wechat" => {
                // Whole policy in shadow: nothing removed, the hidden and the denied included.
                assert_eq!(listed, offered);
                for tool in [
                    "wechat_mass_preview",
                    "wechat_mass_delete",
                    "wechat_get_user_info",
                ] {
                    assert!(listed.iter().any(|t| t == tool), "{tool} in {listed:?}");
                }
            }
            _ => {
                // Hidden or denied but shadowed: kept; hidden or unlisted and enforced: removed.
                let removed = ["wework_send_markdown", "ding_send_markdown"];
                let expected: Vec<String> = offered
                    .iter()
                    .filter(|t| !removed.contains(&t.as_str()))
                    .cloned()
                    .collect();
                assert_eq!(listed, expected, "offered {offered:?}");
                for tool in ["ding_send_text", "lark_send_text", "wework_send_text"] {
                    assert!(listed.iter().any(|t| t == tool), "{tool} in {listed:?}");
                }
                for tool in removed {
                    assert!(
                        offered.iter().any(|t| t == tool),
                        "the server offers {tool}"
                    );
                }
            }
        }
        // Both lists really came from the server: once asked directly, once through Envoy.
        assert_eq!(
            d.upstream_stats(server)["methods"]["tools/list"],
            2,
            "{}",
            d.upstream_stats(server)
        );
    }
}
