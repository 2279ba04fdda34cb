//! The committed attack corpus (`tests/corpus/hostile-requests.json`), every case sent through
//! the real Envoy with the built filter: each gets the documented answer, reaches the upstream
//! only when the policy allows it, and the filter keeps serving. `docs/attack-corpus.md` is
//! generated from the corpus and must match it (`UPDATE_CORPUS_DOC=1` rewrites it).

use std::time::Instant;

use e2e::http::{post_chunked, raw_exchange, MCP_ACCEPT};
use e2e::{repo_root, Deployment, DeploymentOptions};
use serde_json::Value;

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{"wechat_get_followers":{},
    "wechat_mass_delete":{"action":"deny","reason":"never"}}}"#;

fn corpus() -> Vec<Value> {
    let path = repo_root().join("tests/corpus/hostile-requests.json");
    let text = std::fs::read_to_string(&path).expect("corpus");
    let document: Value = serde_json::from_str(&text).expect("corpus is JSON");
    document["cases"].as_array().expect("cases").clone()
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

fn body_of(case: &Value) -> Vec<u8> {
    if let Some(body) = case["body"].as_str() {
        return body.as_bytes().to_vec();
    }
    let mut body = Vec::new();
    for part in case["body_parts"].as_array().expect("body or body_parts") {
        let times = part["times"].as_u64().unwrap_or(1);
        if let Some(t) = part["text"].as_str() {
            body.extend_from_slice(t.as_bytes());
        } else if let Some(hex) = part["hex"].as_str() {
            body.extend(
                (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")),
            );
        } else if let Some(t) = part["repeat"].as_str() {
            body.extend(t.as_bytes().repeat(times as usize));
        } else if let Some(t) = part["numbered"].as_str() {
            for i in 0..times {
                body.extend_from_slice(t.replace("{}", &i.to_string()).as_bytes());
            }
        } else if let Some(t) = part["utf16"].as_str() {
            body.extend(t.encode_utf16().flat_map(u16::to_le_bytes));
        } else {
            panic!("unknown body part {part}");
        }
    }
    body
}

fn headers_of(case: &Value) -> Vec<(String, String)> {
    let read = |field: &str| -> Option<Vec<(String, String)>> {
        case[field].as_array().map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("name").to_owned(),
                        p[1].as_str().expect("value").to_owned(),
                    )
                })
                .collect()
        })
    };
    let mut headers = read("replace_headers").unwrap_or_else(|| {
        vec![
            ("content-type".into(), "application/json".into()),
            ("accept".into(), MCP_ACCEPT.into()),
        ]
    });
    headers.extend(read("extra_headers").unwrap_or_default());
    headers
}

/// One HTTP/1.1 request, written byte for byte (repeated headers and odd bytes included).
fn raw_request(case: &Value, body: &[u8]) -> Vec<u8> {
    let method = case["method"].as_str().unwrap_or("POST");
    let path = case["path"].as_str().unwrap_or("/wechat/mcp");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers_of(case) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// Status and the JSON-RPC error codes of an answer (one object, or a batch's array).
fn outcome(status: u16, body: &str) -> (u16, Vec<i64>) {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let messages = match &value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let codes = messages
        .iter()
        .filter_map(|m| m["error"]["code"].as_i64())
        .collect();
    (status, codes)
}

async fn h2_with_trailers(url: &str, body: Vec<u8>) -> (u16, String) {
    use http_body_util::{BodyExt, StreamBody};
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-trailer", http::HeaderValue::from_static("end"));
    let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = vec![
        Ok(http_body::Frame::data(bytes::Bytes::from(body))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .body(reqwest::Body::wrap(
            StreamBody::new(futures_util::stream::iter(frames)).boxed(),
        ))
        .send()
        .await
        .expect("h2c POST");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Every answer the case produced (one per request it sends).
async fn send(d: &Deployment, case: &Value) -> Vec<(u16, String)> {
    let body = body_of(case);
    match case["transport"].as_str() {
        None => {
            let response = raw_exchange(d.port, &raw_request(case, &body));
            vec![(response.status, response.body)]
        }
        Some("chunked-every-split") => {
            let mut answers = Vec::new();
            for split in 1..body.len() {
                let (head, tail) = body.split_at(split);
                let r = post_chunked(d.port, "/wechat/mcp", &[head, tail], &[]);
                answers.push((r.status, r.body));
            }
            let bytes: Vec<&[u8]> = body.chunks(1).collect();
            let r = post_chunked(d.port, "/wechat/mcp", &bytes, &[]);
            answers.push((r.status, r.body));
            answers
        }
        Some("h2-trailers") => vec![h2_with_trailers(&d.url("wechat"), body).await],
        Some(other) => panic!("unknown transport {other}"),
    }
}

fn answer_column(case: &Value) -> String {
    let expect = &case["expect"];
    let status = expect["status"].as_u64().unwrap_or(0);
    match expect["error_code"].as_i64() {
        Some(code) => format!("{status}, `{code}`"),
        None => status.to_string(),
    }
}

fn doc_markdown(cases: &[Value]) -> String {
    let mut out = String::from(
        "# Attack corpus\n\n\
         Generated from `tests/corpus/hostile-requests.json` by `tests/tests/attack_corpus.rs`, which \
         sends every case through the real Envoy with the built filter (policy: default deny, \
         `wechat_get_followers` allowed, `wechat_mass_delete` denied) and checks the answer and \
         whether the upstream server received it. Refusals in the policy's default `jsonrpc` mode \
         answer 200 with a JSON-RPC error; malformed requests get 4xx.\n\n\
         | case | attack | what the filter does | answer | reaches the server |\n\
         |---|---|---|---|---|\n",
    );
    for case in cases {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            text(case, "name"),
            text(case, "attack").replace('|', "\\|"),
            text(case, "filter").replace('|', "\\|"),
            answer_column(case),
            if case["expect"]["upstream"].as_bool() == Some(true) {
                "yes (allowed)"
            } else {
                "**no**"
            }
        ));
    }
    out.push_str(
        "\nRequests straddling a window boundary are covered by `tests/tests/soak.rs` \
         (`every_window_admits_exactly_max_under_sustained_load`): 32 clients over several 2-second \
         windows; every call counts in exactly one window, and each window hands out counts \
         1..=max exactly once. A fixed window can admit `max` just before a boundary and `max` \
         again just after it, as documented for fixed windows.\n",
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_request_gets_its_documented_answer_and_none_slips_through() {
    let cases = corpus();
    let doc_path = repo_root().join("docs/attack-corpus.md");
    let markdown = doc_markdown(&cases);
    if std::env::var("UPDATE_CORPUS_DOC").is_ok() {
        // Rewriting is not checking: this mode only writes the document.
        std::fs::write(&doc_path, &markdown).expect("write doc");
    } else {
        assert_eq!(
            std::fs::read_to_string(&doc_path).unwrap_or_default(),
            markdown,
            "docs/attack-corpus.md is out of date: run with UPDATE_CORPUS_DOC=1"
        );
    }

    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let mut failures = Vec::new();
    for case in &cases {
        let name = text(case, "name");
        let expect = &case["expect"];
        // Every method counts: a PUT forwarded by mistake must show up too.
        let before = d.upstream_requests("wechat");
        let started = Instant::now();
        let answers = send(&d, case).await;
        let elapsed = started.elapsed();
        eprintln!("{name}: {} request(s) in {elapsed:?}", answers.len());
        let forwarded = d.upstream_requests("wechat") - before;
        let want_status = expect["status"].as_u64().expect("status") as u16;
        let reaches = expect["upstream"].as_bool().expect("upstream");
        for (status, body) in &answers {
            let (status, codes) = outcome(*status, body);
            let code_ok = expect["error_code"]
                .as_i64()
                .is_none_or(|code| codes.contains(&code));
            if status != want_status || !code_ok {
                failures.push(format!(
                    "{name}: got {status} {codes:?}, want {} — {}",
                    answer_column(case),
                    body.chars().take(300).collect::<String>()
                ));
                break;
            }
        }
        let want_forwarded = if reaches { answers.len() as u64 } else { 0 };
        if forwarded != want_forwarded {
            failures.push(format!(
                "{name}: the upstream received {forwarded} requests, want {want_forwarded}"
            ));
        }
        if let Some(limit) = expect["max_millis"]
            .as_u64()
            .or(case["max_millis"].as_u64())
        {
            if elapsed.as_millis() as u64 > limit {
                failures.push(format!("{name}: took {elapsed:?}, budget {limit} ms"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // Still alive and deciding: no VM crash, no reload.
    let log = d.envoy_log();
    assert!(!log.contains("panicked"), "{log}");
    let control = cases
        .iter()
        .find(|c| c["name"] == "control-allowed-call")
        .expect("control case");
    assert_eq!(send(&d, control).await[0].0, 200);
}
