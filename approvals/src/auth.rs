//! Who is asking: an approver signed in on the page (session cookie), a bot with an API token
//! (`Authorization: Bearer`), or a person a trusted proxy names in a header. And what they may
//! do: read with any of these; decide a call only with the right to decide its server and tool,
//! never approve their own call, and never write from another site.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};

use crate::api::{ApiError, App};
use crate::approvers::{Approvers, Right};
use crate::secrets;
use crate::sessions::{Session, Sessions};

const NO_APPROVERS: &str = "nobody could sign in to approve: pass --approvers FILE (approvers \
     with passwords and API tokens; see approval-service hash-password / hash-token), or \
     --trust-identity-header NAME with --trusted-peer IP (the proxy in front that authenticates \
     people), or both";

/// The command-line options of this module.
#[derive(Default)]
pub struct Options {
    approvers: Option<PathBuf>,
    identity_header: Option<String>,
    trusted_peers: Vec<IpAddr>,
    header_may_decide: Vec<Right>,
    check_peers: Vec<IpAddr>,
}

impl Options {
    pub fn from_env() -> Options {
        Options {
            approvers: std::env::var_os("APPROVAL_APPROVERS").map(PathBuf::from),
            ..Options::default()
        }
    }

    /// Takes `flag` with its `value`, or says it is unknown.
    pub fn set(&mut self, flag: &str, value: String) -> Result<(), String> {
        let ip = |value: &str| {
            value
                .parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| format!("{flag}: not an IP address: {value}"))
        };
        match flag {
            "--approvers" => self.approvers = Some(value.into()),
            "--trust-identity-header" => self.identity_header = Some(value),
            "--trusted-peer" => self.trusted_peers.push(ip(&value)?),
            "--header-approvers-may-decide" => self.header_may_decide.push(Right::parse(&value)?),
            "--check-peer" => self.check_peers.push(ip(&value)?),
            other => return Err(format!("unknown option {other}")),
        }
        Ok(())
    }
}

/// Identities a trusted proxy puts in a header.
struct HeaderTrust {
    name: HeaderName,
    peers: Vec<IpAddr>,
    may_decide: Vec<Right>,
}

pub struct Auth {
    approvers: Approvers,
    header: Option<HeaderTrust>,
    /// Who may ask `/v1/check`; empty: anyone.
    check_peers: Vec<IpAddr>,
    pub sessions: Sessions,
    /// `--public-url` is https: the cookie is `Secure` (and `__Host-` prefixed).
    secure_cookies: bool,
    /// `scheme://host[:port]` of `--public-url`, for the `Origin` check.
    public_origin: String,
}

/// How the caller proved who they are.
pub enum Via {
    Session(String, Session),
    Token,
    Header,
}

/// An authenticated approver.
pub struct Caller {
    pub name: String,
    pub via: Via,
    may_decide: Vec<Right>,
}

impl Auth {
    pub fn new(options: Options, public_url: &str) -> Result<Auth, String> {
        let approvers = match &options.approvers {
            Some(path) => Approvers::load(path)?,
            None => Approvers::none(),
        };
        let header = header_trust(&options)?;
        if approvers.is_empty() && header.is_none() {
            return Err(NO_APPROVERS.into());
        }
        Ok(Auth {
            approvers,
            header,
            check_peers: options.check_peers,
            sessions: Sessions::default(),
            secure_cookies: public_url.starts_with("https://"),
            public_origin: origin_of(public_url).to_owned(),
        })
    }

    /// Whether the approvers file lets anyone sign in on the page.
    pub fn has_login(&self) -> bool {
        !self.approvers.is_empty()
    }

    pub fn may_check(&self, peer: Option<IpAddr>) -> bool {
        self.check_peers.is_empty() || peer.is_some_and(|p| self.check_peers.contains(&p))
    }

    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        if let Some(caller) = self.header_identity(headers, peer)? {
            return Ok(caller);
        }
        if let Some(token) = bearer_token(headers)? {
            let approver = self
                .approvers
                .by_token(token)
                .ok_or_else(|| ApiError::unauthorized("this API token is not valid"))?;
            return Ok(Caller {
                name: approver.name.clone(),
                via: Via::Token,
                may_decide: approver.may_decide.clone(),
            });
        }
        if let Some(caller) = self.session_identity(headers) {
            return Ok(caller);
        }
        Err(ApiError::unauthorized(self.how_to_sign_in()))
    }

    fn how_to_sign_in(&self) -> &'static str {
        match (self.has_login(), self.header.is_some()) {
            (true, false) => "not signed in: sign in at /login, or send Authorization: Bearer <API token>",
            (false, _) => "not signed in: come through the proxy that authenticates approvers",
            (true, true) => "not signed in: come through the proxy that authenticates approvers, sign in at /login, or send Authorization: Bearer <API token>",
        }
    }

    /// The header's identity, only from a trusted peer: from anyone else it is ignored.
    fn header_identity(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<Caller>, ApiError> {
        let Some(trust) = &self.header else {
            return Ok(None);
        };
        if !peer.is_some_and(|p| trust.peers.contains(&p)) {
            return Ok(None);
        }
        let Some(value) = headers.get(&trust.name) else {
            return Ok(None);
        };
        let name = value
            .to_str()
            .map(str::trim)
            .ok()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| ApiError::unauthorized(format!("{} is not a name", trust.name)))?;
        let may_decide = match self.approvers.named(name) {
            Some(approver) => approver.may_decide.clone(),
            None => trust.may_decide.clone(),
        };
        Ok(Some(Caller {
            name: name.to_owned(),
            via: Via::Header,
            may_decide,
        }))
    }

    fn session_identity(&self, headers: &HeaderMap) -> Option<Caller> {
        let id = cookie(headers, self.cookie_name())?;
        let session = self.sessions.find(id)?;
        let approver = self.approvers.named(&session.approver)?;
        Some(Caller {
            name: approver.name.clone(),
            may_decide: approver.may_decide.clone(),
            via: Via::Session(id.to_owned(), session),
        })
    }

    /// The approver whose name and password these are; `None` whatever was wrong.
    pub fn sign_in(&self, name: &str, password: &str) -> Option<String> {
        self.approvers
            .by_password(name, password)
            .map(|approver| approver.name.clone())
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-approval_session"
        } else {
            "approval_session"
        }
    }

    /// `Set-Cookie` for session `id`; `None` ends it.
    pub fn session_cookie(&self, id: Option<&str>) -> String {
        let (value, max_age) = match id {
            Some(id) => (id, crate::sessions::SESSION_LIFETIME.as_secs()),
            None => ("", 0),
        };
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
            self.cookie_name()
        )
    }

    /// Every write: refused from another site; with a session cookie, only with its CSRF token
    /// (`X-CSRF-Token` header or `csrf_token` field). API tokens and proxy headers are not sent
    /// by a browser on its own, so they need no CSRF token.
    pub fn check_write(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
        csrf_field: Option<&str>,
    ) -> Result<(), ApiError> {
        self.refuse_cross_site(headers)?;
        if let Via::Session(_, session) = &caller.via {
            let sent = header_text(headers, "x-csrf-token").or(csrf_field);
            if !sent.is_some_and(|token| secrets::same(token, &session.csrf_token)) {
                return Err(ApiError::forbidden(
                    "missing or wrong CSRF token: decide from the approval page (or send X-CSRF-Token)",
                ));
            }
        }
        Ok(())
    }

    /// A browser says where a request comes from (`Sec-Fetch-Site`, `Origin`); one from another
    /// site is refused, whatever credentials it carries.
    pub fn refuse_cross_site(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(site) = header_text(headers, "sec-fetch-site") {
            if !matches!(site, "same-origin" | "none") {
                return Err(ApiError::forbidden(format!(
                    "a {site} request may not change anything here"
                )));
            }
        }
        if let Some(origin) = header_text(headers, ORIGIN.as_str()) {
            if !self.is_own_origin(origin, headers) {
                return Err(ApiError::forbidden(format!(
                    "a request from {origin} may not change anything here"
                )));
            }
        }
        Ok(())
    }

    fn is_own_origin(&self, origin: &str, headers: &HeaderMap) -> bool {
        origin == self.public_origin
            || header_text(headers, HOST.as_str()).is_some_and(|host| {
                origin.strip_prefix("http://") == Some(host)
                    || origin.strip_prefix("https://") == Some(host)
            })
    }
}

fn header_trust(options: &Options) -> Result<Option<HeaderTrust>, String> {
    let Some(name) = &options.identity_header else {
        if !options.trusted_peers.is_empty() || !options.header_may_decide.is_empty() {
            return Err(
                "--trusted-peer and --header-approvers-may-decide need --trust-identity-header"
                    .into(),
            );
        }
        return Ok(None);
    };
    let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("--trust-identity-header: not a header name: {name}"))?;
    if options.trusted_peers.is_empty() {
        return Err(format!(
            "--trust-identity-header {name} needs --trusted-peer IP: the proxy's address, the only \
             peer whose {name} is believed"
        ));
    }
    Ok(Some(HeaderTrust {
        name,
        peers: options.trusted_peers.clone(),
        may_decide: options.header_may_decide.clone(),
    }))
}

impl Caller {
    /// Whether this approver may approve (or deny) a call of `tool` on `server` made by
    /// `identity`; if not, why.
    pub fn may_decide(
        &self,
        server: &str,
        tool: &str,
        identity: Option<&str>,
        approve: bool,
    ) -> Result<(), String> {
        if !self.may_decide.iter().any(|r| r.covers(server, tool)) {
            return Err(format!(
                "{} may not decide calls of {tool} on {server}",
                self.name
            ));
        }
        if approve && identity.is_some_and(|caller| is_same_identity(caller, &self.name)) {
            return Err(format!(
                "this call was made as {}: someone else must approve it",
                self.name
            ));
        }
        Ok(())
    }

    pub fn via_name(&self) -> &'static str {
        match self.via {
            Via::Session(..) => "session",
            Via::Token => "token",
            Via::Header => "header",
        }
    }
}

/// Compared ignoring case (and surrounding spaces): `Carol` may not approve `carol`'s call.
fn is_same_identity(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        app.auth.authenticate(&parts.headers, peer(parts))
    }
}

/// The TCP peer's address (IPv4-mapped IPv6 as IPv4).
pub fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip().to_canonical())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Authorization: Bearer <token>`; another scheme is refused rather than ignored.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized(
            "Authorization: only Bearer <API token> is taken",
        )),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url.get(after_scheme..).and_then(|rest| rest.find('/')) {
        Some(path) => url.get(..after_scheme + path).unwrap_or(url),
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://gw.example/approvals/"),
            "https://gw.example"
        );
        assert_eq!(origin_of("http://127.0.0.1:9080"), "http://127.0.0.1:9080");
    }

    #[test]
    fn nobody_approves_their_own_call() {
        let carol = Caller {
            name: "carol".into(),
            via: Via::Token,
            may_decide: vec![Right {
                server: "*".into(),
                tool: "*".into(),
            }],
        };
        assert!(carol.may_decide("s", "t", Some("Carol"), true).is_err());
        assert!(carol.may_decide("s", "t", Some("carol"), false).is_ok());
        assert!(carol.may_decide("s", "t", Some("agent-a"), true).is_ok());
        assert!(carol.may_decide("s", "t", None, true).is_ok());
    }
}
