//! The pages people use: the approval page (signed in), and signing in and out with a name and
//! password from the approvers file (a session cookie).

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::api::{ApiError, App};
use crate::auth::{Caller, Via};

/// Unauthenticated, the page sends people to sign in. A link from another site (the
/// `approve_url` in a chat) arrives without the `SameSite=Strict` cookie: the page then goes on
/// from this origin, with the cookie, and a signed-in person lands back on the page.
const FROM_ANOTHER_SITE: &str = "<!doctype html><meta charset=\"utf-8\"><title>Approvals</title>\
<script>location.replace('/login' + location.hash)</script><a href=\"/login\">Sign in</a>";

const PROXY_ONLY: &str = "<!doctype html><meta charset=\"utf-8\"><title>Approvals</title>\
<p>Approvers are signed in by the proxy in front of this service: open the page through it.</p>";

pub async fn page(headers: HeaderMap, caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(caller) => Html(render_page(&caller)).into_response(),
        Err(refusal) if refusal.status() == StatusCode::UNAUTHORIZED => {
            let cross_site = headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"cross-site");
            if cross_site {
                Html(FROM_ANOTHER_SITE).into_response()
            } else {
                see_other("/login", None)
            }
        }
        Err(refusal) => refusal.into_response(),
    }
}

fn render_page(caller: &Caller) -> String {
    let csrf_token = match &caller.via {
        Via::Session(_, session) => session.csrf_token.as_str(),
        Via::Token | Via::Header => "",
    };
    include_str!("page.html")
        .replace("{{approver}}", &escape(&caller.name))
        .replace("{{via}}", caller.via_name())
        .replace("{{csrf_token}}", csrf_token)
}

pub async fn login_form(State(app): State<Arc<App>>, caller: Result<Caller, ApiError>) -> Response {
    if caller.is_ok() {
        return see_other("/", None);
    }
    login_page(&app, StatusCode::OK, "", None)
}

/// The sign-in form, with `message` and the `#id` to land on.
fn login_page(app: &App, status: StatusCode, message: &str, fragment: Option<&str>) -> Response {
    if !app.auth.has_login() {
        return (status, Html(PROXY_ONLY)).into_response();
    }
    let page = include_str!("login.html")
        .replace("{{message}}", message)
        .replace("{{fragment}}", fragment.unwrap_or_default());
    (status, Html(page)).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// The page's `#id` the person came for, back after signing in.
    #[serde(default)]
    fragment: String,
}

/// `POST /login`: a wrong name, a wrong password and an approver without a password all get the
/// same answer.
pub async fn sign_in(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    app.auth.refuse_cross_site(&headers)?;
    let form: SignIn = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad(format!("invalid sign-in form: {e}")))?;
    let fragment = safe_fragment(&form.fragment);
    let Some(approver) = app.auth.sign_in(form.name.trim(), &form.password) else {
        eprintln!("approval-service: a failed sign-in from {}", peer.ip());
        let message = "Wrong name or password.";
        return Ok(login_page(
            &app,
            StatusCode::UNAUTHORIZED,
            message,
            fragment,
        ));
    };
    let session = app
        .auth
        .sessions
        .start(&approver)
        .map_err(ApiError::internal)?;
    let target = match fragment {
        Some(id) => format!("/#{id}"),
        None => "/".to_owned(),
    };
    Ok(see_other(
        &target,
        Some(app.auth.session_cookie(Some(&session))),
    ))
}

/// `POST /logout`, from the page: the session ends here, not only in the browser.
pub async fn sign_out(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct SignOut {
        csrf_token: Option<String>,
    }
    let Via::Session(id, _) = &caller.via else {
        return Err(ApiError::bad(
            "not signed in with a session (an API token or the proxy's header): nothing to end",
        ));
    };
    let form: SignOut = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad(format!("invalid sign-out form: {e}")))?;
    app.auth
        .check_write(&caller, &headers, form.csrf_token.as_deref())?;
    app.auth.sessions.end(id);
    Ok(see_other("/login", Some(app.auth.session_cookie(None))))
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, location.to_owned())]).into_response();
    if let Some(value) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// A request id (what the page's fragments are), nothing that could take the redirect elsewhere.
fn safe_fragment(fragment: &str) -> Option<&str> {
    let id = fragment.strip_prefix('#').unwrap_or(fragment);
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (!id.is_empty() && id.len() <= 64 && id.chars().all(plain)).then_some(id)
}

/// Text for HTML (element content and quoted attribute values).
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect()
}
