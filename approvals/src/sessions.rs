//! Signed-in people: a random session id (the cookie) names an approver and that session's CSRF
//! token until it expires. Kept in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secrets;

/// How long a sign-in lasts, however active the person is.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

#[derive(Clone)]
pub struct Session {
    pub approver: String,
    /// Sent back with every write the page makes; a cross-site page cannot read it.
    pub csrf_token: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `approver`: its id, for the cookie.
    pub fn start(&self, approver: &str) -> Result<String, String> {
        let id = secrets::random_hex(32)?;
        let session = Session {
            approver: approver.to_owned(),
            csrf_token: secrets::random_hex(32)?,
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut sessions = self.lock()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// The live session `id` names, if any.
    pub fn find(&self, id: &str) -> Option<Session> {
        let sessions = self.lock().ok()?;
        sessions
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    pub fn end(&self, id: &str) {
        if let Ok(mut sessions) = self.lock() {
            sessions.remove(id);
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Session>>, String> {
        self.by_id
            .lock()
            .map_err(|_| "session lock poisoned".to_owned())
    }
}
