//! Raw HTTP through the real Envoy with the built filter: what an agent sees for every kind of
//! refusal, and proof from the upstream's own counters that refused requests never arrived.

use e2e::http::{post, post_chunked, raw_exchange, request, tools_call};
use e2e::{Deployment, DeploymentOptions};
use serde_json::json;

fn stateless(wechat_policy: &str) -> Deployment {
    Deployment::start(DeploymentOptions {
        wechat_policy: wechat_policy.to_owned(),
        stateless: true,
        ..Default::default()
    })
}

const POLICY: &str = r#"{"version":"1","default":"deny","max_body_bytes":4096,"tools":{
    "wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":1000,"scope":"grant"}]},
    "wechat_get_followers":{},
    "wechat_mass_delete":{"action":"deny","reason":"deleting sent messages needs a human"}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn refusals_never_reach_the_upstream_and_carry_readable_errors() {
    let d = stateless(POLICY);
    let url = d.url("wechat");

    let denied = post(&url, tools_call(11, "wechat_mass_delete"), &[]).await;
    assert_eq!(denied.status, 200);
    assert_eq!(denied.header("content-type"), Some("application/json"));
    let body = denied.json();
    assert_eq!(body["id"], 11);
    assert_eq!(body["error"]["code"], -32003);
    assert_eq!(
        body["error"]["message"],
        "Tool \"wechat_mass_delete\" is not allowed by policy: deleting sent messages needs a human"
    );
    assert_eq!(
        body["error"]["data"],
        json!({"tool":"wechat_mass_delete","decision":"denied","reason":"deleting sent messages needs a human"})
    );

    let unlisted = post(&url, tools_call(12, "wechat_get_user_info"), &[])
        .await
        .json();
    assert_eq!(
        unlisted["error"]["data"]["reason"],
        "the policy denies every tool it does not list (default: deny)"
    );

    let not_json = post(&url, "{not json", &[]).await;
    assert_eq!(
        (
            not_json.status,
            not_json.json()["error"]["code"].clone(),
            not_json.json()["id"].clone()
        ),
        (400, json!(-32700), json!(null))
    );

    let not_rpc = post(
        &url,
        r#"{"method":"tools/call","params":{"name":"wechat_get_followers"}}"#,
        &[],
    )
    .await;
    assert_eq!(
        (not_rpc.status, not_rpc.json()["error"]["code"].clone()),
        (400, json!(-32600))
    );

    let no_name = post(
        &url,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}"#,
        &[],
    )
    .await;
    assert_eq!(
        (
            no_name.status,
            no_name.json()["error"]["code"].clone(),
            no_name.json()["id"].clone()
        ),
        (400, json!(-32602), json!(5))
    );

    let too_big = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"wechat_get_followers","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let large = post(&url, too_big.clone(), &[]).await;
    assert_eq!(
        (
            large.status,
            large.json()["error"]["data"]["max_body_bytes"].clone()
        ),
        (413, json!(4096))
    );
    // Same body without a content-length (chunked): refused once the buffered size passes the limit.
    let pieces: Vec<&[u8]> = too_big.as_bytes().chunks(1000).collect();
    let large_chunked = post_chunked(d.port, "/wechat/mcp", &pieces, &[]);
    assert_eq!(large_chunked.status, 413, "{large_chunked:?}");

    let header_mismatch = post(
        &url,
        tools_call(7, "wechat_mass_delete"),
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "wechat_get_followers"),
        ],
    )
    .await;
    assert_eq!(
        (
            header_mismatch.status,
            header_mismatch.json()["error"]["code"].clone()
        ),
        (400, json!(-32020))
    );

    assert_eq!(
        d.upstream_posts("wechat"),
        0,
        "nothing refused may reach the upstream: {}",
        d.upstream_stats("wechat")
    );

    // The one allowed call does arrive, so the zero above is meaningful.
    let allowed = post(&url, tools_call(8, "wechat_get_followers"), &[]).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert!(allowed.body.contains("\"result\""), "{}", allowed.body);
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_get_followers"), 1);
    assert_eq!(d.upstream_posts("wechat"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_bodies_arrive_byte_identical_even_when_chunked() {
    let d = stateless(POLICY);
    // Odd whitespace, key order and escapes: forwarded exactly as sent, never re-serialised.
    let body = "{ \"params\" : {\"arguments\":{\"next_openid\":\"\\u00e9t\u{e9}\"}, \"name\":\"wechat_get_followers\"},\n\t\"method\":\"tools/call\", \"id\": 1, \"jsonrpc\":\"2.0\" }";
    let response = post(&d.url("wechat"), body, &[]).await;
    assert_eq!(response.status, 200, "{response:?}");
    let stats = d.upstream_stats("wechat");
    assert_eq!(stats["recent_posts"][0]["body"], body);

    // The same call split at every byte boundary of a 7-byte chunking, and one byte at a time.
    for size in [7, 1] {
        let pieces: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
        let response = post_chunked(d.port, "/wechat/mcp", &pieces, &[]);
        assert_eq!(response.status, 200, "chunks of {size}: {response:?}");
    }
    let stats = d.upstream_stats("wechat");
    assert_eq!(stats["tool_calls"]["wechat_get_followers"], 3);
    for post in stats["recent_posts"].as_array().unwrap() {
        assert_eq!(post["body"], body);
    }

    // A denied call split into pieces is still denied, and never arrives.
    let denied = tools_call(2, "wechat_mass_delete");
    let pieces: Vec<&[u8]> = denied.as_bytes().chunks(5).collect();
    let response = post_chunked(d.port, "/wechat/mcp", &pieces, &[]);
    assert_eq!(response.json()["error"]["code"], -32003, "{response:?}");
    assert_eq!(d.upstream_posts("wechat"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_decided_whole() {
    let d = stateless(POLICY);
    let url = d.url("wechat");
    let refused = format!(
        "[{},{},{}]",
        tools_call(1, "wechat_mass_send"),
        tools_call(2, "wechat_mass_delete"),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    );
    let response = post(&url, refused, &[("x-agent-id", "batcher")]).await;
    assert_eq!(response.status, 200);
    let items = response.json();
    assert_eq!(items.as_array().map(Vec::len), Some(2), "{items}");
    assert_eq!(
        (items[0]["id"].clone(), items[0]["error"]["code"].clone()),
        (json!(1), json!(-32005))
    );
    assert_eq!(
        (items[1]["id"].clone(), items[1]["error"]["code"].clone()),
        (json!(2), json!(-32003))
    );

    // A single denied call wrapped in a one-element batch is no way around the policy.
    let wrapped = post(
        &url,
        format!("[{}]", tools_call(3, "wechat_mass_delete")),
        &[],
    )
    .await
    .json();
    assert_eq!(wrapped[0]["error"]["code"], -32003);
    assert_eq!(d.upstream_posts("wechat"), 0);

    // An allowed batch is forwarded as one request carrying both calls.
    let allowed = format!(
        "[{},{}]",
        tools_call(4, "wechat_mass_send"),
        tools_call(5, "wechat_get_followers")
    );
    post(&url, allowed, &[("x-agent-id", "batcher")]).await;
    let stats = d.upstream_stats("wechat");
    assert_eq!(stats["posts"], 1);
    assert_eq!(stats["tool_calls"]["wechat_mass_send"], 1);
    assert_eq!(stats["tool_calls"]["wechat_get_followers"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_and_delete_pass_untouched() {
    let d = Deployment::start(DeploymentOptions::default());
    let url = d.url("wechat");
    // No session: the server (not the filter) answers; both reach it.
    let get = request("GET", &url, &[("accept", "text/event-stream")]).await;
    let delete = request("DELETE", &url, &[("mcp-session-id", "no-such-session")]).await;
    let stats = d.upstream_stats("wechat");
    assert_eq!(
        stats["gets"], 1,
        "GET reached the server (status {})",
        get.status
    );
    assert_eq!(
        stats["deletes"], 1,
        "DELETE reached the server (status {})",
        delete.status
    );
    assert!(
        !get.body.contains("not allowed by policy")
            && !delete.body.contains("not allowed by policy")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_refusal_mode_answers_403_and_429() {
    let policy = r#"{"version":"1","default":"deny","refusal_mode":"http","tools":{
        "wechat_mass_send":{"limits":[{"counter":"sends","window":3600,"max":1,"scope":"global"}]}}}"#;
    e2e::wait_for_window_room(3600, 30);
    let d = stateless(policy);
    let url = d.url("wechat");
    let denied = post(&url, tools_call(1, "wechat_mass_delete"), &[]).await;
    assert_eq!(
        (denied.status, denied.json()["error"]["code"].clone()),
        (403, json!(-32003))
    );
    assert_eq!(
        post(&url, tools_call(2, "wechat_mass_send"), &[])
            .await
            .status,
        200
    );
    let limited = post(&url, tools_call(3, "wechat_mass_send"), &[]).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("x-envoy-ratelimited"), Some("true"));
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert!((1..=3600).contains(&retry_after));
    assert_eq!(
        limited.json()["error"]["data"]["retry_after_seconds"],
        retry_after
    );
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http1_request_with_an_empty_body_is_a_parse_error() {
    let d = stateless(POLICY);
    let response = raw_exchange(
        d.port,
        b"POST /wechat/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["code"], -32700);
    assert_eq!(d.upstream_posts("wechat"), 0);
}

/// HTTP/2 (h2c) POST whose body is followed by trailers: Envoy delivers the body without
/// end_of_stream, then the trailers; the filter must decide at the trailers, not forward blindly.
async fn post_h2_with_trailers(url: &str, body: &str) -> (u16, String) {
    use http_body_util::{BodyExt, StreamBody};
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-trailer", http::HeaderValue::from_static("end"));
    let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = vec![
        Ok(http_body::Frame::data(bytes::Bytes::from(body.to_owned()))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let stream = StreamBody::new(futures_util::stream::iter(frames));
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", e2e::http::MCP_ACCEPT)
        .body(reqwest::Body::wrap(stream.boxed()))
        .send()
        .await
        .expect("h2c POST");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_bodies_ending_in_trailers_are_still_decided() {
    let d = stateless(POLICY);
    let url = d.url("wechat");
    let (status, body) = post_h2_with_trailers(&url, &tools_call(1, "wechat_mass_delete")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("-32003"), "{body}");
    let (status, body) = post_h2_with_trailers(&url, &tools_call(2, "wechat_get_followers")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\""), "{body}");
    let stats = d.upstream_stats("wechat");
    assert_eq!(
        stats["tool_calls"],
        json!({"wechat_get_followers": 1}),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_are_counted_on_envoys_prometheus_endpoint_with_bounded_labels() {
    let d = stateless(POLICY);
    let url = d.url("wechat");
    post(&url, tools_call(1, "wechat_get_followers"), &[]).await;
    post(&url, tools_call(2, "wechat_get_followers"), &[]).await;
    post(&url, tools_call(3, "wechat_mass_delete"), &[]).await;
    // Made-up names are all counted as "other": clients cannot create series at will.
    for (i, name) in ["made_up_1", "made_up_2", "made up 3"].iter().enumerate() {
        post(&url, tools_call(10 + i as u64, name), &[]).await;
    }
    post(&url, "{oops", &[]).await;
    // Refused before the body is read (a method MCP does not use): counted as invalid too.
    let put = reqwest::Client::new()
        .put(&url)
        .header("content-type", "application/json")
        .body(tools_call(20, "wechat_get_followers"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 405);
    // An allowed call in a batch refused for another: counted as not forwarded, never allowed.
    let batch = format!(
        "[{},{}]",
        tools_call(21, "wechat_get_followers"),
        tools_call(22, "wechat_mass_delete")
    );
    post(&url, batch, &[]).await;
    let (_, text) =
        mcp_policy_sample::deployment::http_get(d.envoy.admin_port, "/stats/prometheus").unwrap();
    let sample = |labels: &str| -> Option<u64> {
        let prefix = format!("mcp_policy_tool_calls_total{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(
        sample(r#"mcp_server="wechat",mcp_tool="wechat_get_followers",mcp_decision="allowed""#),
        Some(2),
        "{text}"
    );
    assert_eq!(
        sample(r#"mcp_server="wechat",mcp_tool="wechat_mass_delete",mcp_decision="denied""#),
        Some(2)
    );
    assert_eq!(
        sample(
            r#"mcp_server="wechat",mcp_tool="wechat_get_followers",mcp_decision="batch_refused""#
        ),
        Some(1)
    );
    assert_eq!(
        sample(r#"mcp_server="wechat",mcp_tool="other",mcp_decision="denied""#),
        Some(3)
    );
    assert_eq!(
        sample(r#"mcp_server="wechat",mcp_tool="none",mcp_decision="invalid""#),
        Some(2)
    );
    assert!(
        !text.contains("made_up"),
        "unknown tool names never become labels"
    );
}
