//! Requests built to make the filter and the MCP server read different things, or to crash the
//! filter. Each is refused by the real Envoy with the built filter, none reaches the upstream,
//! and the filter keeps serving afterwards.

use e2e::http::{post, raw_exchange, request, tools_call};
use e2e::{Deployment, DeploymentOptions};
use serde_json::json;

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{"wechat_get_followers":{},
    "wechat_mass_delete":{"action":"deny","reason":"never"}}}"#;

fn raw_post(extra_headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /wechat/mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(extra_headers);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_are_refused_and_the_filter_survives() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    let denied_call = tools_call(1, "wechat_mass_delete");

    // A header value that is not UTF-8 (would panic inside the proxy-wasm SDK's string getters).
    let response = raw_exchange(
        d.port,
        &raw_post(
            b"Content-Type: application/json\r\nX-Agent-Id: \xff\xfe\r\n",
            denied_call.as_bytes(),
        ),
    );
    assert_eq!(
        (response.status, response.json()["error"]["code"].clone()),
        (400, json!(-32600)),
        "{response:?}"
    );

    // The same header twice: which one would the server or a front proxy believe?
    let response = raw_exchange(
        d.port,
        &raw_post(
            b"Content-Type: application/json\r\nX-Agent-Id: a\r\nX-Agent-Id: b\r\n",
            denied_call.as_bytes(),
        ),
    );
    assert_eq!(response.status, 400, "{response:?}");

    // UTF-7: "tools+AC8-call" is "tools/call" to a server that honours the charset.
    let utf7 = br#"{"jsonrpc":"2.0","id":1,"method":"tools+AC8-call","params":{"name":"wechat_mass_delete"}}"#;
    let response = raw_exchange(
        d.port,
        &raw_post(b"Content-Type: application/json; charset=utf-7\r\n", utf7),
    );
    assert_eq!(response.status, 415, "{response:?}");

    // Compressed, or not declared as JSON: never passed on uninspected.
    let gzip = post(&url, denied_call.clone(), &[("content-encoding", "gzip")]).await;
    assert_eq!(gzip.status, 415);
    let no_type = raw_exchange(d.port, &raw_post(b"", denied_call.as_bytes()));
    assert_eq!(no_type.status, 415, "{no_type:?}");

    // MCP messages travel in POSTs only; other methods with a body are refused (by the filter:
    // the upstream would answer 405 too, so it must not have seen them).
    let requests_before = d.upstream_requests("wechat");
    for method in ["PUT", "PATCH"] {
        let response = reqwest::Client::new()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &url,
            )
            .header("content-type", "application/json")
            .header("accept", e2e::http::MCP_ACCEPT)
            .body(denied_call.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method}");
    }
    assert_eq!(d.upstream_requests("wechat"), requests_before);

    // Parser differentials: repeated keys, keys differing only in case.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wechat_get_followers","name":"wechat_mass_delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wechat_get_followers","Name":"wechat_mass_delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"wechat_mass_delete"}}"#,
    ] {
        let response = post(&url, body, &[]).await;
        assert_eq!(response.status, 400, "{body}: {response:?}");
    }

    // A huge batch is refused whole, cheaply.
    let batch = format!(
        "[{}]",
        vec![tools_call(1, "wechat_get_followers"); 65].join(",")
    );
    let response = post(&url, batch, &[]).await;
    assert_eq!(
        (response.status, response.json()["error"]["code"].clone()),
        (400, json!(-32600))
    );

    assert_eq!(
        d.upstream_posts("wechat"),
        0,
        "{}",
        d.upstream_stats("wechat")
    );

    // Still alive and still deciding: no VM crash, no reload.
    let ok = post(&url, tools_call(2, "wechat_get_followers"), &[]).await;
    assert!(ok.body.contains("\"result\""), "{ok:?}");
    assert_eq!(
        post(&url, denied_call, &[]).await.json()["error"]["code"],
        -32003
    );
    request("GET", &url, &[("accept", "text/event-stream")]).await;
    assert_eq!(
        d.upstream_stats("wechat")["gets"],
        1,
        "a GET without a body still passes"
    );
    let log = d.envoy_log();
    assert!(!log.contains("panicked"), "{log}");
}
