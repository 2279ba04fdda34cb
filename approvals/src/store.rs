//! Requests and decisions in SQLite. One connection behind a mutex: every read-then-write below
//! runs whole under it, so two agents can never both use one approval.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

pub type Result<T> = std::result::Result<T, String>;

fn db_error(e: rusqlite::Error) -> String {
    format!("database: {e}")
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub server: String,
    pub tool: String,
    pub identity: Option<String>,
    pub arguments: Value,
    pub created_at: i64,
    /// pending | approved | denied | used | expired
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    pub valid_until: Option<i64>,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub request_id: String,
    pub server: String,
    pub tool: String,
    pub decision: String,
    pub approver: String,
    pub reason: String,
    pub at: i64,
}

/// A call the filter asks about.
pub struct Question<'a> {
    pub digest: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub identity: Option<&'a str>,
    pub arguments: &'a Value,
    pub valid_for_s: i64,
}

/// What the filter is told.
pub enum Verdict {
    Approved(Request),
    Denied(Request),
    Pending(Request),
}

pub enum DecideError {
    NotFound,
    NotPending(String),
    Other(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    identity TEXT,
    arguments TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    reason TEXT,
    valid_for_s INTEGER NOT NULL,
    valid_until INTEGER,
    used_at INTEGER,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_digest ON requests (digest, status);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
";

const COLUMNS: &str = "id, server, tool, identity, arguments, created_at, status, decided_by, \
                       decided_at, reason, valid_until, used_at";

pub struct Store {
    conn: Connection,
}

fn request_from(row: &Row) -> rusqlite::Result<Request> {
    let arguments: String = row.get(4)?;
    Ok(Request {
        id: row.get(0)?,
        server: row.get(1)?,
        tool: row.get(2)?,
        identity: row.get(3)?,
        arguments: serde_json::from_str(&arguments).unwrap_or(Value::String(arguments)),
        created_at: row.get(5)?,
        status: row.get(6)?,
        decided_by: row.get(7)?,
        decided_at: row.get(8)?,
        reason: row.get(9)?,
        valid_until: row.get(10)?,
        used_at: row.get(11)?,
    })
}

impl Store {
    pub fn open(path: &std::path::Path) -> Result<Store> {
        let mut conn = Connection::open(path).map_err(db_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        crate::chain::migrate(&mut conn).map_err(db_error)?;
        Ok(Store { conn })
    }

    fn one(&self, sql: &str, args: impl rusqlite::Params) -> Result<Option<Request>> {
        self.conn
            .query_row(sql, args, request_from)
            .optional()
            .map_err(db_error)
    }

    pub fn get(&self, id: &str) -> Result<Option<Request>> {
        self.one(
            &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
            [id],
        )
    }

    pub fn list(&self, status: Option<&str>) -> Result<Vec<Request>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM requests WHERE ?1 IS NULL OR status = ?1 \
             ORDER BY created_at DESC, rowid DESC LIMIT 200"
        );
        let mut statement = self.conn.prepare(&sql).map_err(db_error)?;
        let rows = statement
            .query_map([status], request_from)
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    pub fn decisions(&self) -> Result<Vec<Decision>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT d.request_id, r.server, r.tool, d.decision, d.approver, d.reason, d.at \
                 FROM decisions d JOIN requests r ON r.id = d.request_id \
                 ORDER BY d.seq DESC LIMIT 200",
            )
            .map_err(db_error)?;
        let rows = statement
            .query_map([], |row| {
                Ok(Decision {
                    request_id: row.get(0)?,
                    server: row.get(1)?,
                    tool: row.get(2)?,
                    decision: row.get(3)?,
                    approver: row.get(4)?,
                    reason: row.get(5)?,
                    at: row.get(6)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    /// The filter's question, answered from what is decided so far: a usable approval is used
    /// up, an unreported denial is reported, otherwise the call is (or stays) pending. `created`
    /// is set when this made a new pending request.
    pub fn check(&mut self, q: &Question, now: i64, new_id: &str) -> Result<(Verdict, bool)> {
        let tx = self.conn.transaction().map_err(db_error)?;
        tx.execute(
            "UPDATE requests SET status = 'expired' \
             WHERE digest = ?1 AND status = 'approved' AND valid_until <= ?2",
            params![q.digest, now],
        )
        .map_err(db_error)?;
        let find = |status: &str, extra: &str| {
            tx.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM requests WHERE digest = ?1 AND status = ?2 {extra} \
                     ORDER BY created_at, rowid LIMIT 1"
                ),
                params![q.digest, status],
                request_from,
            )
            .optional()
            .map_err(db_error)
        };
        let verdict = if let Some(mut approved) = find("approved", "")? {
            tx.execute(
                "UPDATE requests SET status = 'used', used_at = ?2 WHERE id = ?1",
                params![approved.id, now],
            )
            .map_err(db_error)?;
            approved.status = "used".into();
            approved.used_at = Some(now);
            (Verdict::Approved(approved), false)
        } else if let Some(denied) = find("denied", "AND reported = 0")? {
            tx.execute(
                "UPDATE requests SET reported = 1 WHERE id = ?1",
                params![denied.id],
            )
            .map_err(db_error)?;
            (Verdict::Denied(denied), false)
        } else if let Some(pending) = find("pending", "")? {
            (Verdict::Pending(pending), false)
        } else {
            let arguments = q.arguments.to_string();
            tx.execute(
                "INSERT INTO requests (id, digest, server, tool, identity, arguments, created_at, \
                 status, valid_for_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8)",
                params![
                    new_id,
                    q.digest,
                    q.server,
                    q.tool,
                    q.identity,
                    arguments,
                    now,
                    q.valid_for_s
                ],
            )
            .map_err(db_error)?;
            let created = tx
                .query_row(
                    &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
                    [new_id],
                    request_from,
                )
                .map_err(db_error)?;
            (Verdict::Pending(created), true)
        };
        tx.commit().map_err(db_error)?;
        Ok(verdict)
    }

    /// A human's decision on a pending request; recorded with who and when.
    pub fn decide(
        &mut self,
        id: &str,
        approve: bool,
        approver: &str,
        reason: &str,
        now: i64,
    ) -> std::result::Result<Request, DecideError> {
        let other = |e: rusqlite::Error| DecideError::Other(db_error(e));
        // Immediate: the write lock from the start, so another process sharing the file waits
        // instead of failing when this transaction reads the chain's head and then writes.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(other)?;
        let status: Option<String> = tx
            .query_row("SELECT status FROM requests WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(other)?;
        match status.as_deref() {
            None => return Err(DecideError::NotFound),
            Some("pending") => {}
            Some(status) => return Err(DecideError::NotPending(status.to_owned())),
        }
        let decision = if approve { "approved" } else { "denied" };
        tx.execute(
            "UPDATE requests SET status = ?2, decided_by = ?3, decided_at = ?4, reason = ?5, \
             valid_until = CASE WHEN ?2 = 'approved' THEN ?4 + valid_for_s END WHERE id = ?1",
            params![id, decision, approver, now, reason],
        )
        .map_err(other)?;
        tx.execute(
            "INSERT INTO decisions (request_id, decision, approver, reason, at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, decision, approver, reason, now],
        )
        .map_err(other)?;
        crate::chain::seal(&tx, tx.last_insert_rowid()).map_err(other)?;
        let request = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"),
                [id],
                request_from,
            )
            .map_err(other)?;
        tx.commit().map_err(other)?;
        Ok(request)
    }
}
