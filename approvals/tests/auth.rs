//! Who may approve, against the real service: signing in on the page (cookie and CSRF token),
//! API tokens, a trusted proxy's identity header (believed only from the proxy's address),
//! rights per server and tool, no self-approval, no cross-site writes, and no start without
//! approvers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use mcp_policy_sample::deployment::{read_until_line, ChildGuard};
use serde_json::json;
use support::*;

/// 127.0.0.2: another address on the loopback interface, the test's "proxy".
const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25").replace(' ', "+").replace('\'', "%27")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Sign in as carol on the page: the session cookie (`name=value`) and the page's CSRF token.
async fn sign_in(s: &Service) -> (String, String) {
    let reply = send(
        "POST",
        &s.url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form(&[("name", "carol"), ("password", CAROL_PASSWORD)])),
    )
    .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let cookie = reply.header("set-cookie").to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = send("GET", &s.url("/"), &[("cookie", &pair)], None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = page
        .text
        .split("<meta name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(csrf.len(), 64, "{}", page.text);
    (pair, csrf)
}

async fn decide_in_session(
    s: &Service,
    id: &str,
    action: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Reply {
    let url = s.url(&format!("/v1/requests/{id}/{action}"));
    send("POST", &url, headers, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_approver_approves_with_the_pages_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());

    // The page sends the unauthenticated to sign in.
    let page = send("GET", &s.url("/"), &[], None).await;
    assert_eq!((page.status, page.header("location")), (303, "/login"));
    // A link from another site arrives without the SameSite=Strict cookie: the page goes on from
    // its own origin, where the browser sends it.
    let from_a_link = send(
        "GET",
        &s.url("/"),
        &[("sec-fetch-site", "cross-site")],
        None,
    )
    .await;
    assert!(
        from_a_link.status == 200 && from_a_link.text.contains("location.replace('/login'"),
        "{from_a_link:?}"
    );
    let login = send("GET", &s.url("/login"), &[], None).await;
    assert!(login.status == 200 && login.text.contains("name=\"password\""));

    // A wrong password and an unknown name get the very same answer.
    let failed = |name: &'static str, password: &'static str| {
        let url = s.url("/login");
        async move {
            let body = form(&[("name", name), ("password", password)]);
            let headers = [("content-type", "application/x-www-form-urlencoded")];
            send("POST", &url, &headers, Some(body)).await
        }
    };
    let wrong_password = failed("carol", "guess").await;
    let unknown_name = failed("mallory", "guess").await;
    let no_password = failed("dan", "guess").await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(wrong_password.text, unknown_name.text);
    assert_eq!(wrong_password.text, no_password.text);
    assert_eq!(unknown_name.status, 401);
    assert!(wrong_password.header("set-cookie").is_empty());

    let reply = send(
        "POST",
        &s.url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form(&[
            ("name", "carol"),
            ("password", CAROL_PASSWORD),
            ("fragment", "#abc"),
        ])),
    )
    .await;
    assert_eq!((reply.status, reply.header("location")), (303, "/#abc"));
    let cookie = reply.header("set-cookie");
    for attribute in [
        "approval_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(attribute), "{attribute} not in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");

    let (session, csrf) = sign_in(&s).await;
    let id = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let listed = send(
        "GET",
        &s.url("/v1/requests?status=pending"),
        &[("cookie", &session)],
        None,
    )
    .await;
    assert_eq!(
        listed.json()["requests"][0]["may_approve"],
        true,
        "{listed:?}"
    );
    let approved = decide_in_session(
        &s,
        &id,
        "approve",
        &[
            ("cookie", &session),
            ("x-csrf-token", &csrf),
            ("content-type", "application/json"),
            ("origin", &s.base),
            ("sec-fetch-site", "same-origin"),
        ],
        json!({"reason": "fine"}).to_string(),
    )
    .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.json()["decided_by"], "carol");

    // Signing out ends the session on the server, not only in the browser.
    let out = send(
        "POST",
        &s.url("/logout"),
        &[
            ("cookie", &session),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(form(&[("csrf_token", &csrf)])),
    )
    .await;
    assert_eq!((out.status, out.header("location")), (303, "/login"));
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = send("GET", &s.url("/v1/requests"), &[("cookie", &session)], None).await;
    assert_eq!(after.status, 401, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_public_url_makes_the_session_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let file = approvers_file(dir.path());
    let s = start(
        dir.path(),
        &[
            "--approvers".into(),
            file.display().to_string(),
            "--public-url".into(),
            "https://approvals.example".into(),
        ],
    );
    let reply = send(
        "POST",
        &s.url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form(&[("name", "carol"), ("password", CAROL_PASSWORD)])),
    )
    .await;
    let cookie = reply.header("set-cookie");
    assert!(
        cookie.starts_with("__Host-approval_session=") && cookie.contains("; Secure"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_approver_is_the_tokens_owner_not_a_body_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    let digest = "token-approves";
    let question = question(digest, "notify", "lark_send_text", Some("agent-b"));
    let id = check(&s, &question).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approved = decide_with_token(
        &s,
        CAROL_TOKEN,
        &id,
        "approve",
        json!({"approver": "mallory", "reason": "ok"}),
    )
    .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.json()["decided_by"], "carol");
    // The filter is told the authenticated approver.
    let answer = check(&s, &question).await;
    assert_eq!(
        (answer["status"].as_str(), answer["approver"].as_str()),
        (Some("approved"), Some("carol"))
    );
    let decisions = send(
        "GET",
        &s.url("/v1/decisions"),
        &[("authorization", &bearer(DAN_TOKEN))],
        None,
    )
    .await;
    assert_eq!(
        decisions.json()["decisions"][0]["approver"],
        "carol",
        "{decisions:?}"
    );
    assert!(!decisions.text.contains("mallory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_api_answers_401() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    // The filter's question needs none.
    let id = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let no_token: &[(&str, &str)] = &[];
    let wrong_token: &[(&str, &str)] = &[("authorization", "Bearer not-a-token")];
    let basic: &[(&str, &str)] = &[("authorization", "Basic Y2Fyb2w6eA==")];
    for headers in [no_token, wrong_token, basic] {
        for (method, path) in [
            ("GET", "/v1/requests".to_owned()),
            ("GET", format!("/v1/requests/{id}")),
            ("GET", "/v1/decisions".to_owned()),
            ("GET", "/v1/events".to_owned()),
            ("POST", format!("/v1/requests/{id}/approve")),
            ("POST", format!("/v1/requests/{id}/deny")),
        ] {
            let reply = send(method, &s.url(&path), headers, Some("{}".into())).await;
            assert_eq!(reply.status, 401, "{method} {path} {headers:?}: {reply:?}");
            assert!(
                reply.json()["error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty()),
                "{reply:?}"
            );
            assert!(
                reply.header("www-authenticate").starts_with("Bearer"),
                "{reply:?}"
            );
        }
    }
    let still = send(
        "GET",
        &s.url(&format!("/v1/requests/{id}")),
        &[("authorization", &bearer(READER_TOKEN))],
        None,
    )
    .await;
    assert_eq!(still.json()["status"], "pending", "{still:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_without_the_right_is_refused_403() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    let notify = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let wechat = pending(&s, "wechat", "wechat_mass_send", Some("agent-a")).await;

    // reader may read, and decide nothing.
    let listed = send(
        "GET",
        &s.url("/v1/requests?status=pending"),
        &[("authorization", &bearer(READER_TOKEN))],
        None,
    )
    .await;
    assert_eq!(listed.status, 200);
    let first = &listed.json()["requests"][0];
    assert_eq!(
        (first["may_approve"].as_bool(), first["may_deny"].as_bool()),
        (Some(false), Some(false))
    );
    assert!(
        first["why_not"]
            .as_str()
            .unwrap()
            .contains("reader may not decide"),
        "{first}"
    );
    for action in ["approve", "deny"] {
        let reply = decide_with_token(&s, READER_TOKEN, &notify, action, json!({})).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert!(reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("may not decide calls of lark_send_text on notify"));
    }
    // dan may decide wechat's calls only.
    let refused = decide_with_token(&s, DAN_TOKEN, &notify, "approve", json!({})).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let allowed = decide_with_token(&s, DAN_TOKEN, &wechat, "approve", json!({})).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let one = send(
        "GET",
        &s.url(&format!("/v1/requests/{notify}")),
        &[("authorization", &bearer(CAROL_TOKEN))],
        None,
    )
    .await;
    assert_eq!(
        one.json()["status"],
        "pending",
        "a refused decision changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_with_the_session_cookie_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    let (session, csrf) = sign_in(&s).await;
    let id = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let json_type = ("content-type", "application/json");
    let body = json!({"reason": "forged"}).to_string();
    let forgeries: [&[(&str, &str)]; 5] = [
        &[("cookie", &session), json_type],
        &[("cookie", &session), json_type, ("x-csrf-token", "0000")],
        &[
            ("cookie", &session),
            json_type,
            ("x-csrf-token", &csrf),
            ("sec-fetch-site", "cross-site"),
        ],
        &[
            ("cookie", &session),
            json_type,
            ("x-csrf-token", &csrf),
            ("origin", "https://evil.example"),
        ],
        &[
            ("cookie", &session),
            json_type,
            ("x-csrf-token", &csrf),
            ("origin", "null"),
        ],
    ];
    for headers in forgeries {
        let reply = decide_in_session(&s, &id, "approve", headers, body.clone()).await;
        assert_eq!(reply.status, 403, "{headers:?}: {reply:?}");
        assert!(reply.json()["error"].is_string(), "{reply:?}");
    }
    // An HTML form of another site posts the same way, and carries no token.
    let form_post = decide_in_session(
        &s,
        &id,
        "approve",
        &[
            ("cookie", &session),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form(&[("reason", "forged")]),
    )
    .await;
    assert_eq!(form_post.status, 403, "{form_post:?}");
    let still = send(
        "GET",
        &s.url(&format!("/v1/requests/{id}")),
        &[("cookie", &session)],
        None,
    )
    .await;
    assert_eq!(still.json()["status"], "pending", "{still:?}");
    // The page's own form field works as the header does.
    let own = decide_in_session(
        &s,
        &id,
        "deny",
        &[
            ("cookie", &session),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form(&[("reason", "no"), ("csrf_token", &csrf)]),
    )
    .await;
    assert_eq!(own.status, 200, "{own:?}");
    // Signing in from another site is refused too.
    let login = send(
        "POST",
        &s.url("/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "cross-site"),
        ],
        Some(form(&[("name", "carol"), ("password", CAROL_PASSWORD)])),
    )
    .await;
    assert_eq!(login.status, 403, "{login:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_approves_their_own_call_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    for identity in ["agent-a", "Agent-A"] {
        let id = pending(&s, "notify", "lark_send_text", Some(identity)).await;
        let listed = send(
            "GET",
            &s.url(&format!("/v1/requests/{id}")),
            &[("authorization", &bearer(AGENT_A_TOKEN))],
            None,
        )
        .await;
        assert_eq!(listed.json()["may_approve"], false, "{listed:?}");
        let own = decide_with_token(&s, AGENT_A_TOKEN, &id, "approve", json!({})).await;
        assert_eq!(own.status, 403, "{identity}: {own:?}");
        let message = own.json()["error"].as_str().unwrap().to_owned();
        assert!(
            message.contains("someone else must approve it"),
            "{message}"
        );
        // Someone else may.
        let other = decide_with_token(&s, CAROL_TOKEN, &id, "approve", json!({})).await;
        assert_eq!(other.status, 200, "{other:?}");
    }
    // Stopping one's own call is allowed: a denial only keeps it from running.
    let id = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let denied = decide_with_token(&s, AGENT_A_TOKEN, &id, "deny", json!({})).await;
    assert_eq!(denied.status, 200, "{denied:?}");
}

/// The service trusting `x-approver` from 127.0.0.2 only; header identities may decide
/// everything.
fn start_behind_proxy(dir: &std::path::Path, more: &[&str]) -> Service {
    let options: Vec<String> = [
        "--trust-identity-header",
        "X-Approver",
        "--trusted-peer",
        "127.0.0.2",
        "--header-approvers-may-decide",
        "*:*",
    ]
    .iter()
    .chain(more)
    .map(|s| s.to_string())
    .collect();
    start(dir, &options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_header_counts_only_from_the_trusted_peer() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_behind_proxy(dir.path(), &[]);
    let id = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let url = s.url(&format!("/v1/requests/{id}/approve"));
    let as_erin = [("x-approver", "erin"), ("content-type", "application/json")];

    // From 127.0.0.1 (not the proxy) the header is ignored: nobody is signed in.
    let direct = send_from(None, "GET", &s.url("/v1/requests"), &as_erin, None).await;
    assert_eq!(direct.status, 401, "{direct:?}");
    let forged = send_from(None, "POST", &url, &as_erin, Some("{}".into())).await;
    assert_eq!(forged.status, 401, "{forged:?}");
    let page = send_from(None, "GET", &s.url("/"), &as_erin, None).await;
    assert_eq!(page.status, 303, "{page:?}");

    // Through the proxy (127.0.0.2) it names the approver, recorded as such.
    let through = send_from(Some(PROXY), "GET", &s.url("/"), &as_erin, None).await;
    assert!(
        through.status == 200 && through.text.contains("content=\"erin\""),
        "{through:?}"
    );
    let approved = send_from(
        Some(PROXY),
        "POST",
        &url,
        &as_erin,
        Some(json!({"approver": "x"}).to_string()),
    )
    .await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert_eq!(approved.json()["decided_by"], "erin");

    // ... and its identity may not approve its own call either.
    let own = pending(&s, "notify", "lark_send_text", Some("agent-a")).await;
    let as_agent = [
        ("x-approver", "agent-a"),
        ("content-type", "application/json"),
    ];
    let url = s.url(&format!("/v1/requests/{own}/approve"));
    let refused = send_from(Some(PROXY), "POST", &url, &as_agent, Some("{}".into())).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    // A browser behind the proxy posting from another site is refused, with no token needed.
    let cross = [("x-approver", "erin"), ("sec-fetch-site", "cross-site")];
    let refused = send_from(Some(PROXY), "POST", &url, &cross, Some("{}".into())).await;
    assert_eq!(refused.status, 403, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_identities_without_rights_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = approvers_file(dir.path());
    // Both ways in: the approvers file's people keep their rights through the header too.
    let s = start(
        dir.path(),
        &[
            "--approvers".into(),
            file.display().to_string(),
            "--trust-identity-header".into(),
            "x-approver".into(),
            "--trusted-peer".into(),
            "127.0.0.2".into(),
        ],
    );
    let id = pending(&s, "wechat", "wechat_mass_send", Some("agent-a")).await;
    let url = s.url(&format!("/v1/requests/{id}/approve"));
    let as_erin = [("x-approver", "erin")];
    let read = send_from(Some(PROXY), "GET", &s.url("/v1/requests"), &as_erin, None).await;
    assert_eq!(read.status, 200, "{read:?}");
    let refused = send_from(Some(PROXY), "POST", &url, &as_erin, None).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let as_dan = [("x-approver", "dan")];
    let approved = send_from(Some(PROXY), "POST", &url, &as_dan, None).await;
    assert_eq!(approved.status, 200, "{approved:?}");
    // The file's tokens work from any address.
    let id = pending(&s, "notify", "lark_send_text", None).await;
    let reply = decide_with_token(&s, CAROL_TOKEN, &id, "approve", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_peers_restrict_who_may_ask() {
    let dir = tempfile::tempdir().unwrap();
    let file = approvers_file(dir.path());
    let s = start(
        dir.path(),
        &[
            "--approvers".into(),
            file.display().to_string(),
            "--check-peer".into(),
            "127.0.0.2".into(),
        ],
    );
    let body = question("peer", "notify", "lark_send_text", None).to_string();
    let headers = [("content-type", "application/json")];
    let refused = send_from(
        None,
        "POST",
        &s.url("/v1/check"),
        &headers,
        Some(body.clone()),
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let asked = send_from(
        Some(PROXY),
        "POST",
        &s.url("/v1/check"),
        &headers,
        Some(body),
    )
    .await;
    assert_eq!(
        (asked.status, asked.json()["status"].as_str()),
        (200, Some("pending")),
        "{asked:?}"
    );
}

#[test]
fn the_service_refuses_to_start_without_approvers() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 3] = [
        &[],
        &["--trust-identity-header", "x-approver"],
        &["--trusted-peer", "127.0.0.2"],
    ];
    for options in cases {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.path().join("a.db"))
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut guard = ChildGuard::new("approval-service", child);
        let said = read_until_line(stderr, Duration::from_secs(30), |l| {
            l.starts_with("approval-service:")
        })
        .unwrap();
        assert!(
            said.contains("--trusted-peer") || said.contains("--trust-identity-header"),
            "{options:?}: {said}"
        );
        let exited = (0..250).find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            guard.try_exit_status()
        });
        assert!(
            exited.is_some_and(|s| !s.success()),
            "{options:?}: {exited:?}"
        );
    }
}
