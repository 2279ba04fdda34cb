//! Who is calling, through the real Envoy: identities verified by Envoy itself (`jwt_authn` with a
//! local JWKS, mTLS with SPIFFE client certificates) or sent as a header, mapped to grants. Every
//! credential is made fresh by tests/clients/pki.py. Each listener has its own upstream server,
//! whose own counts prove what was allowed through.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{envoy_bin, repo_root, sample_server_bin, wait_for_window_room};
use mcp_policy_sample::deployment::FilterBuild;
use mcp_policy_sample::deployment::{
    free_port, http_get, start_envoy, start_sample_server, EnvoyOptions, EnvoyProcess,
    ServerProcess,
};
use serde_json::{json, Value};

/// API keys are listed in grants by hash (`mcp-policy hash k-reader-1`), never in clear.
const JWT_POLICY: &str = r#"{"version":"1","default":"deny",
  "identity":{"sources":[{"jwt_claim":"sub"},{"header":"x-api-key","secret":true}],"missing":"deny"},
  "tools":{"wechat_mass_delete":{"action":"deny","reason":"never by an agent"}},
  "grants":{
    "writers":{"identities":["alice","dave"],
      "tools":{"wechat_mass_send":{"limits":[{"counter":"writer_sends","window":"hour","max":3,"scope":"grant"}]},
               "wechat_mass_delete":{}}},
    "readers":{"identities":["bob","READER_KEY_HASH"],
      "tools":{"wechat_get_followers":{"limits":[{"counter":"reads","window":"hour","max":1,"scope":"identity"}]},
               "wechat_get_user_info":{"limits":[{"counter":"lookups","window":"hour","max":1,"scope":"session"}]}}}}}"#;

const MTLS_POLICY: &str = r#"{"version":"1","default":"deny",
  "identity":{"sources":[{"mtls":"uri_san"}],"missing":"deny"},
  "grants":{
    "support":{"identities":["spiffe://cluster.local/ns/support/*"],
      "tools":{"wechat_get_followers":{"limits":[{"counter":"support_reads","window":"hour","max":2,"scope":"grant"}]},
               "wechat_mass_send":{"limits":[{"counter":"support_sends","window":"hour","max":1,"scope":"identity"}]}}},
    "marketing":{"identities":["spiffe://cluster.local/ns/marketing/sa/bot"],
      "tools":{"wechat_mass_send":{}}}}}"#;

const CLIENTS: [&str; 4] = [
    "spiffe://cluster.local/ns/support/sa/bot",
    "spiffe://cluster.local/ns/support/sa/helper",
    "spiffe://cluster.local/ns/marketing/sa/bot",
    "spiffe://cluster.local/ns/sales/sa/bot",
];

/// How a verified JWT claim reaches the filter. The .wasm reads the payload jwt_authn keeps in
/// dynamic metadata; the native module cannot (docs/parity.md), so jwt_authn copies the claim
/// into a header (`claim_to_headers`) that a filter before it strips from every request: a
/// client cannot forge it.
struct JwtClaim {
    source: &'static str,
    described: &'static str,
    provider: &'static str,
    strip: &'static str,
}

fn jwt_claim() -> JwtClaim {
    match e2e::filter_build() {
        FilterBuild::Wasm => JwtClaim {
            source: r#"{"jwt_claim":"sub"}"#,
            described: "JWT claim sub",
            provider: "",
            strip: "",
        },
        FilterBuild::Native => JwtClaim {
            source: r#"{"header":"x-jwt-sub"}"#,
            described: "header x-jwt-sub",
            provider: "\n                  claim_to_headers: [{ header_name: x-jwt-sub, claim_name: sub }]",
            strip: r#"
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations: { request_mutations: [{ remove: x-jwt-sub }] }"#,
        },
    }
}

fn policy_filter(name: &str, policy: &str) -> String {
    format!("\n          {}", e2e::filter_entry(name, policy))
}

fn listener(name: &str, port: u16, cluster: &str, filters: &str, tls: &str) -> String {
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - {tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - match: {{ path: /wechat/mcp }}
                route: {{ cluster: {cluster}, prefix_rewrite: /mcp, timeout: 0s }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}"#
    )
}

fn cluster(name: &str, port: u16) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}] }}]"#
    )
}

struct Setup {
    _envoy: EnvoyProcess,
    jwt_upstream: ServerProcess,
    mtls_upstream: ServerProcess,
    jwt_port: u16,
    mtls_port: u16,
    pki: PathBuf,
    tokens: Value,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let mut make_pki = Command::new(repo_root().join(".venv/bin/python"));
    make_pki
        .arg(repo_root().join("tests/clients/pki.py"))
        .arg(&pki)
        .args(CLIENTS);
    let made = e2e::run_guarded("pki.py", make_pki, Duration::from_secs(120));
    assert!(
        made.status.success(),
        "pki.py: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(pki.join("tokens.json")).unwrap()).unwrap();
    let jwks = std::fs::read_to_string(pki.join("jwks.json")).unwrap();

    let jwt_upstream = start_sample_server(&sample_server_bin(), "wechat", true).unwrap();
    let mtls_upstream = start_sample_server(&sample_server_bin(), "wechat", true).unwrap();
    let (jwt_port, mtls_port, admin) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );

    // jwt_authn runs first: it rejects bad tokens itself (401) and stores verified payloads in
    // dynamic metadata, where the policy filter reads the `sub` claim. Requests without a token
    // go on (allow_missing) so the filter can fall back to the API-key header.
    let claim = jwt_claim();
    let jwt_authn = format!(
        r#"{strip}
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                agents:
                  issuer: https://issuer.mcp-policy.test
                  audiences: [mcp-servers]
                  local_jwks: {{ inline_string: {jwks} }}
                  payload_in_metadata: jwt_payload{provider}
              rules:
              - match: {{ prefix: / }}
                requires: {{ requires_any: {{ requirements: [{{ provider_name: agents }}, {{ allow_missing: {{}} }}] }} }}{}"#,
        policy_filter(
            "jwt-wechat",
            &JWT_POLICY
                .replace("READER_KEY_HASH", &key_hash("k-reader-1"))
                .replace(r#"{"jwt_claim":"sub"}"#, claim.source)
        ),
        jwks = Value::String(jwks),
        strip = claim.strip,
        provider = claim.provider,
    );
    let tls = format!(
        r#"transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates: [{{ certificate_chain: {{ filename: "{p}/server.pem" }}, private_key: {{ filename: "{p}/server.key" }} }}]
            validation_context: {{ trusted_ca: {{ filename: "{p}/ca.pem" }} }}"#,
        p = pki.display()
    );
    let config = format!(
        "admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}\nstatic_resources:\n  listeners:{}{}\n  clusters:{}{}\n",
        listener("jwt", jwt_port, "jwt_upstream", &jwt_authn, ""),
        listener("mtls", mtls_port, "mtls_upstream", &policy_filter("mtls-wechat", MTLS_POLICY), &tls),
        cluster("jwt_upstream", jwt_upstream.port),
        cluster("mtls_upstream", mtls_upstream.port),
    );
    let envoy = start_envoy(&EnvoyOptions {
        envoy_bin: envoy_bin(),
        config,
        work_dir: dir.path().join("envoy"),
        concurrency: 2,
        admin_port: admin,
        log_to_stderr: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        _envoy: envoy,
        jwt_upstream,
        mtls_upstream,
        jwt_port,
        mtls_port,
        pki,
        tokens,
        _dir: dir,
    }
}

fn key_hash(key: &str) -> String {
    let mut hash = Command::new(e2e::policy_cli_bin());
    hash.args(["hash", key]);
    let output = e2e::run_guarded("mcp-policy hash", hash, Duration::from_secs(60));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn call_body(tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

/// POST a tools/call with curl (it speaks mTLS with a client certificate); returns status and body.
fn curl(url: &str, tool: &str, extra: &[&str]) -> (u16, Value) {
    let output = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            url,
        ])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "accept: application/json, text/event-stream",
        ])
        .args(["--data-binary", &call_body(tool)])
        .args(extra)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

fn tool_calls(server: &ServerProcess, tool: &str) -> u64 {
    let (_, body) = http_get(server.port, "/stats").expect("stats");
    serde_json::from_str::<Value>(&body).expect("stats JSON")["tool_calls"][tool]
        .as_u64()
        .unwrap_or(0)
}

impl Setup {
    fn jwt_call(&self, token: Option<&str>, tool: &str, extra: &[&str]) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}/wechat/mcp", self.jwt_port);
        let auth =
            token.map(|t| format!("authorization: Bearer {}", self.tokens[t].as_str().unwrap()));
        let mut args: Vec<&str> = extra.to_vec();
        if let Some(auth) = &auth {
            args.extend(["-H", auth]);
        }
        curl(&url, tool, &args)
    }

    fn mtls_call(&self, client: usize, tool: &str) -> (u16, Value) {
        let url = format!("https://127.0.0.1:{}/wechat/mcp", self.mtls_port);
        let pem = self.pki.join(format!("client-{client}.pem"));
        let key = self.pki.join(format!("client-{client}.key"));
        let ca = self.pki.join("ca.pem");
        curl(
            &url,
            tool,
            &[
                "--cacert",
                path(&ca),
                "--cert",
                path(&pem),
                "--key",
                path(&key),
            ],
        )
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn allowed(response: &(u16, Value)) -> bool {
    response.0 == 200 && response.1.get("result").is_some()
}

fn reason(response: &(u16, Value)) -> String {
    response.1["error"]["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn identities_from_jwt_authn_and_api_keys_map_to_grants() {
    wait_for_window_room(3600, 60);
    let s = setup();
    // Writers: alice and dave share the grant's 3 sends per hour.
    assert!(allowed(&s.jwt_call(Some("alice"), "wechat_mass_send", &[])));
    assert!(allowed(&s.jwt_call(Some("alice"), "wechat_mass_send", &[])));
    assert!(allowed(&s.jwt_call(Some("dave"), "wechat_mass_send", &[])));
    let limited = s.jwt_call(Some("dave"), "wechat_mass_send", &[]);
    assert_eq!(
        (
            limited.1["error"]["code"].clone(),
            limited.1["error"]["data"]["counter"].clone()
        ),
        (json!(-32029), json!("writer_sends")),
        "{limited:?}"
    );
    // A grant never widens past a server-wide deny.
    assert_eq!(
        reason(&s.jwt_call(Some("alice"), "wechat_mass_delete", &[])),
        "never by an agent"
    );

    // Readers: bob may read, once per identity; he may not send.
    assert!(allowed(&s.jwt_call(
        Some("bob"),
        "wechat_get_followers",
        &[]
    )));
    assert_eq!(
        s.jwt_call(Some("bob"), "wechat_get_followers", &[]).1["error"]["data"]["counter"],
        "reads"
    );
    assert_eq!(
        reason(&s.jwt_call(Some("bob"), "wechat_mass_send", &[])),
        "grant \"readers\" (held by identity \"bob\") does not include this tool"
    );
    // No token: the API-key header identifies the caller; its own "reads" counter.
    assert!(allowed(&s.jwt_call(
        None,
        "wechat_get_followers",
        &["-H", "x-api-key: k-reader-1"]
    )));
    // An unknown key holds no grant, and is never echoed in clear.
    let stranger = reason(&s.jwt_call(
        None,
        "wechat_get_followers",
        &["-H", "x-api-key: sk-live-secret"],
    ));
    assert!(
        stranger.starts_with("identity \"sha256:")
            && stranger.ends_with("holds no grant on this server (grants: readers, writers)"),
        "{stranger}"
    );
    assert!(!stranger.contains("sk-live"));
    // Verified, but no grant.
    assert_eq!(
        reason(&s.jwt_call(Some("carol"), "wechat_get_followers", &[])),
        "identity \"carol\" holds no grant on this server (grants: readers, writers)"
    );
    // Valid token without the claim, and no key: no identity at all.
    assert_eq!(
        reason(&s.jwt_call(Some("no_sub"), "wechat_get_followers", &[])),
        format!(
            "the caller has no identity (expected {} or header x-api-key)",
            jwt_claim().described
        )
    );
    // A claim header sent by the client is never taken for a verified claim.
    assert_eq!(
        reason(&s.jwt_call(None, "wechat_mass_send", &["-H", "x-jwt-sub: alice"])),
        format!(
            "the caller has no identity (expected {} or header x-api-key)",
            jwt_claim().described
        )
    );
    // Bad tokens are stopped by jwt_authn itself.
    for bad in ["expired", "wrong_issuer"] {
        let (status, body) = s.jwt_call(Some(bad), "wechat_get_followers", &[]);
        assert_eq!(status, 401, "{bad}: {body}");
    }

    // Session scope: one lookup per Mcp-Session-Id, whoever asks.
    assert!(allowed(&s.jwt_call(
        Some("bob"),
        "wechat_get_user_info",
        &["-H", "mcp-session-id: s-1"]
    )));
    assert_eq!(
        s.jwt_call(
            Some("bob"),
            "wechat_get_user_info",
            &["-H", "mcp-session-id: s-1"]
        )
        .1["error"]["data"]["scope"],
        "session"
    );
    assert!(allowed(&s.jwt_call(
        Some("bob"),
        "wechat_get_user_info",
        &["-H", "mcp-session-id: s-2"]
    )));

    // The upstream saw exactly what was allowed: 3 sends, 2 reads, 2 lookups, nothing else.
    assert_eq!(tool_calls(&s.jwt_upstream, "wechat_get_user_info"), 2);
    assert_eq!(tool_calls(&s.jwt_upstream, "wechat_mass_send"), 3);
    assert_eq!(tool_calls(&s.jwt_upstream, "wechat_get_followers"), 2);
    assert_eq!(tool_calls(&s.jwt_upstream, "wechat_mass_delete"), 0);
}

#[test]
fn spiffe_identities_from_mtls_map_to_grants() {
    wait_for_window_room(3600, 60);
    let s = setup();
    // Both support workloads hold the "support" grant by namespace prefix: they share its two
    // reads (grant scope) but each has its own send (identity scope).
    assert!(allowed(&s.mtls_call(0, "wechat_get_followers")));
    assert!(allowed(&s.mtls_call(1, "wechat_get_followers")));
    assert_eq!(
        s.mtls_call(0, "wechat_get_followers").1["error"]["data"]["counter"],
        "support_reads"
    );
    assert!(allowed(&s.mtls_call(0, "wechat_mass_send")));
    assert_eq!(
        s.mtls_call(0, "wechat_mass_send").1["error"]["data"]["counter"],
        "support_sends"
    );
    assert!(allowed(&s.mtls_call(1, "wechat_mass_send")));
    // Marketing may send (no limit) but not read followers.
    assert!(allowed(&s.mtls_call(2, "wechat_mass_send")));
    assert_eq!(
        reason(&s.mtls_call(2, "wechat_get_followers")),
        "grant \"marketing\" (held by identity \"spiffe://cluster.local/ns/marketing/sa/bot\") does not include this tool"
    );
    // Another namespace holds nothing.
    assert_eq!(
        reason(&s.mtls_call(3, "wechat_get_followers")),
        "identity \"spiffe://cluster.local/ns/sales/sa/bot\" holds no grant on this server (grants: marketing, support)"
    );
    assert_eq!(tool_calls(&s.mtls_upstream, "wechat_mass_send"), 3);
    assert_eq!(tool_calls(&s.mtls_upstream, "wechat_get_followers"), 2);
}
