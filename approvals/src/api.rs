//! HTTP: the filter's `/v1/check` (long poll; its request and answer are the engine's
//! `wire::approval` types), the JSON API people and bots use, live events and the page. Every
//! route but `/v1/check` and the sign-in needs an authenticated approver ([`Caller`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use mcp_policy_engine::wire::approval::{CheckAnswer, CheckRequest, CheckStatus, CHECK_PATH};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

use crate::auth::{Auth, Caller, Via};
use crate::pages;
use crate::store::{DecideError, Question, Request, Store, Verdict};

/// The longest a check may hold, whatever the filter asks.
const MAX_HOLD: Duration = Duration::from_secs(600);

pub struct App {
    store: Mutex<Store>,
    /// Bumped on every decision: waiting checks look again.
    decided: watch::Sender<u64>,
    /// Created and decided requests, for the page's live updates.
    events: broadcast::Sender<String>,
    public_url: String,
    pub auth: Auth,
}

impl App {
    pub fn new(store: Store, public_url: String, auth: Auth) -> Arc<App> {
        let (decided, _) = watch::channel(0);
        let (events, _) = broadcast::channel(256);
        Arc::new(App {
            store: Mutex::new(store),
            decided,
            events,
            public_url: public_url.trim_end_matches('/').to_owned(),
            auth,
        })
    }

    fn store(&self) -> Result<std::sync::MutexGuard<'_, Store>, ApiError> {
        self.store
            .lock()
            .map_err(|_| ApiError::internal("store lock poisoned"))
    }

    fn publish(&self, kind: &str, request: &Request) {
        let event = json!({"event": kind, "request": request}).to_string();
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::page))
        .route("/login", get(pages::login_form).post(pages::sign_in))
        .route("/logout", post(pages::sign_out))
        .route(CHECK_PATH, post(check))
        .route("/v1/requests", get(list))
        .route("/v1/requests/{id}", get(one))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
        .route("/v1/decisions", get(decisions))
        .route("/v1/events", get(events))
        .with_state(app)
}

pub struct ApiError(StatusCode, String);

impl ApiError {
    /// No credentials, or wrong ones.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError(StatusCode::UNAUTHORIZED, message.into())
    }
    /// Authenticated, but not allowed this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError(StatusCode::FORBIDDEN, message.into())
    }
    pub fn status(&self) -> StatusCode {
        self.0
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
    }
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::INTERNAL_SERVER_ERROR {
            eprintln!("approval-service: {}", self.1);
        }
        let mut response = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"approval-service\""),
            );
        }
        response
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// 12 characters of base32 from the OS's random source: unguessable enough to name in a URL.
fn new_id() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| {
            char::from(
                *ALPHABET
                    .get(usize::from(*b) % ALPHABET.len())
                    .unwrap_or(&b'a'),
            )
        })
        .collect())
}

/// The filter's question about one call, answered once it is decided or the hold time ends.
async fn check(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Json<CheckAnswer>, ApiError> {
    if !app.auth.may_check(Some(peer.ip().to_canonical())) {
        return Err(ApiError::forbidden(format!(
            "{} is not a --check-peer: only the filter's Envoy may ask",
            peer.ip()
        )));
    }
    let q: CheckRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid check: {e}")))?;
    if q.digest.is_empty() || q.tool.is_empty() {
        return Err(ApiError::bad("digest and tool are required"));
    }
    let question = Question {
        digest: &q.digest,
        server: &q.server,
        tool: &q.tool,
        identity: q.identity.as_deref(),
        arguments: &q.arguments,
        valid_for_s: i64::try_from(q.valid_for_s).unwrap_or(i64::MAX / 2),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.hold_ms).min(MAX_HOLD);
    // Subscribed before looking, so a decision made in between still wakes us.
    let mut decided = app.decided.subscribe();
    let decided_answer = |status, r: Request| CheckAnswer {
        approve_url: None,
        approver: r.decided_by,
        id: r.id,
        reason: r.reason,
        status,
    };
    loop {
        let (verdict, created) = app
            .store()?
            .check(&question, now(), &new_id()?)
            .map_err(ApiError::internal)?;
        match verdict {
            Verdict::Approved(r) => return Ok(Json(decided_answer(CheckStatus::Approved, r))),
            Verdict::Denied(r) => return Ok(Json(decided_answer(CheckStatus::Denied, r))),
            Verdict::Pending(r) => {
                if created {
                    app.publish("created", &r);
                }
                let timed_out = tokio::time::timeout_at(deadline, decided.changed())
                    .await
                    .is_err();
                if timed_out || tokio::time::Instant::now() >= deadline {
                    return Ok(Json(CheckAnswer {
                        approve_url: Some(format!("{}/#{}", app.public_url, r.id)),
                        approver: None,
                        id: r.id,
                        reason: None,
                        status: CheckStatus::Pending,
                    }));
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let requests = app
        .store()?
        .list(query.status.as_deref())
        .map_err(ApiError::internal)?;
    let requests: Vec<Value> = requests.iter().map(|r| with_rights(&caller, r)).collect();
    Ok(Json(json!({"requests": requests})))
}

async fn one(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match app.store()?.get(&id).map_err(ApiError::internal)? {
        Some(request) => Ok(Json(with_rights(&caller, &request))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no request {id}"))),
    }
}

/// A request as the caller sees it: with whether they may approve or deny it, and if not, why.
fn with_rights(caller: &Caller, request: &Request) -> Value {
    let mut value = json!(request);
    let may = |approve| {
        caller.may_decide(
            &request.server,
            &request.tool,
            request.identity.as_deref(),
            approve,
        )
    };
    let (approve, deny) = (may(true), may(false));
    if let Some(object) = value.as_object_mut() {
        object.insert("may_approve".into(), json!(approve.is_ok()));
        object.insert("may_deny".into(), json!(deny.is_ok()));
        object.insert("why_not".into(), json!(approve.err()));
    }
    value
}

/// A decision's body: JSON or a form. Who decides is the authenticated caller, never a field
/// (an `approver` member is ignored).
#[derive(Default, Deserialize)]
struct DecisionBody {
    #[serde(default)]
    reason: String,
    /// For a signed-in page that posts a form rather than sending `X-CSRF-Token`.
    #[serde(default)]
    csrf_token: Option<String>,
}

impl DecisionBody {
    fn read(headers: &HeaderMap, body: &[u8]) -> Result<DecisionBody, ApiError> {
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let invalid = |e: String| ApiError::bad(format!("invalid decision: {e}"));
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(DecisionBody::default())
        } else if is_form {
            serde_urlencoded::from_bytes(body).map_err(|e| invalid(e.to_string()))
        } else {
            serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))
        }
    }
}

async fn approve(
    state: State<Arc<App>>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(state, caller, id, headers, body, true).await
}

async fn deny(
    state: State<Arc<App>>,
    caller: Caller,
    id: Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    decide(state, caller, id, headers, body, false).await
}

async fn decide(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let decision = DecisionBody::read(&headers, &body)?;
    app.auth
        .check_write(&caller, &headers, decision.csrf_token.as_deref())?;
    let result = {
        // One lock for the look and the decision: the request cannot change in between.
        let mut store = app.store()?;
        let request = store
            .get(&id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no request {id}")))?;
        caller
            .may_decide(
                &request.server,
                &request.tool,
                request.identity.as_deref(),
                approve,
            )
            .map_err(ApiError::forbidden)?;
        store.decide(&id, approve, &caller.name, decision.reason.trim(), now())
    };
    match result {
        Ok(request) => {
            app.decided.send_modify(|n| *n = n.wrapping_add(1));
            app.publish("decided", &request);
            Ok(Json(json!(request)))
        }
        Err(DecideError::NotFound) => {
            Err(ApiError(StatusCode::NOT_FOUND, format!("no request {id}")))
        }
        Err(DecideError::NotPending(status)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("request {id} is {status}, not pending"),
        )),
        Err(DecideError::Other(problem)) => Err(ApiError::internal(problem)),
    }
}

async fn decisions(State(app): State<Arc<App>>, _caller: Caller) -> Result<Json<Value>, ApiError> {
    let decisions = app.store()?.decisions().map_err(ApiError::internal)?;
    Ok(Json(json!({"decisions": decisions})))
}

async fn events(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // A session's stream ends with the session (signed out, or expired), not when the page goes.
    let session = match caller.via {
        Via::Session(id, _) => Some(id),
        Via::Token | Via::Header => None,
    };
    let receiver = app.events.subscribe();
    let stream = futures_util::stream::unfold(receiver, move |mut receiver| {
        let app = app.clone();
        let session = session.clone();
        async move {
            let event = receiver.recv().await;
            if session.is_some_and(|id| app.auth.sessions.find(&id).is_none()) {
                return None;
            }
            match event {
                Ok(data) => Some((Ok(Event::default().data(data)), receiver)),
                // A slow page missed some: it reloads its whole list on any event anyway.
                Err(broadcast::error::RecvError::Lagged(_)) => Some((
                    Ok(Event::default().data("{\"event\":\"resync\"}")),
                    receiver,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
