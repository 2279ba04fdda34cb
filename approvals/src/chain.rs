//! The decision log as a hash chain: each decision row stores the previous row's hash and its
//! own, `hash = sha256(prev_hash || canonical content)`, so editing, deleting or reordering a
//! row in the SQLite file breaks the chain at that row, and `approval-service verify` names it.
//!
//! Byte layout, so the log can be checked without this code: `prev_hash` is the previous row's
//! `hash` as 64 lower-case hex characters (64 `0`s for the first row); the content is a JSON
//! object in RFC 8785 (JCS) form — keys sorted, no whitespace, minimal string escapes — with
//! the keys `approver`, `arguments` (the request's stored JSON text, as a string), `at`,
//! `decision`, `digest`, `identity`, `reason`, `request_id`, `seq`, `server` and `tool`; a
//! NULL value leaves its key out. `hash` is the lower-case hex of sha256 over the 64 ASCII
//! characters of `prev_hash` followed by the content's UTF-8 bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first decision.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one decision commits to: the decision row and the immutable part of its request (the
/// digest is what an approval is later used by, so moving an approval to another call shows).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub seq: i64,
    pub request_id: String,
    pub decision: String,
    pub approver: String,
    pub reason: String,
    pub at: i64,
    /// The request's fields: `None` when its row is missing (or, for identity, NULL).
    pub digest: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    pub identity: Option<String>,
    pub arguments: Option<String>,
}

/// A decision row as stored: its content and the hashes written next to it.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub entry: Entry,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// The content's canonical bytes. A BTreeMap, not `serde_json::Map`, whose order depends on a
/// crate feature another dependency may switch on; NULLs are left out so that a column added
/// later as optional leaves the hashes of older rows valid.
pub fn canonical(entry: &Entry) -> Vec<u8> {
    let text = |s: &str| Some(Value::from(s));
    let fields: BTreeMap<&str, Option<Value>> = BTreeMap::from([
        ("approver", text(&entry.approver)),
        ("arguments", entry.arguments.as_deref().and_then(text)),
        ("at", Some(Value::from(entry.at))),
        ("decision", text(&entry.decision)),
        ("digest", entry.digest.as_deref().and_then(text)),
        ("identity", entry.identity.as_deref().and_then(text)),
        ("reason", text(&entry.reason)),
        ("request_id", text(&entry.request_id)),
        ("seq", Some(Value::from(entry.seq))),
        ("server", entry.server.as_deref().and_then(text)),
        ("tool", entry.tool.as_deref().and_then(text)),
    ]);
    let present: BTreeMap<&str, Value> = fields
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .collect();
    // Strings and integers only: serializing them cannot fail.
    serde_json::to_vec(&present).unwrap_or_default()
}

/// The hash of `entry` following `prev_hash`.
pub fn link(prev_hash: &str, entry: &Entry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical(entry));
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0f])
        .map(|nibble| char::from_digit(u32::from(nibble), 16).unwrap_or('0'))
        .collect()
}

/// The chain walked in `seq` order, one row at a time (a long log is never held in memory).
#[derive(Debug, Default)]
pub struct Walk {
    /// The last good row's `seq` and hash.
    last: Option<(i64, String)>,
    count: u64,
    /// A head recorded earlier, and whether the chain has passed through it.
    known_head: Option<(String, bool)>,
}

impl Walk {
    pub fn new(known_head: Option<String>) -> Walk {
        Walk {
            known_head: known_head.map(|h| {
                let seen = h == GENESIS;
                (h, seen)
            }),
            ..Walk::default()
        }
    }

    /// Accept the next row, or say why it breaks the chain.
    pub fn step(&mut self, row: &Stored) -> Result<(), String> {
        let entry = &row.entry;
        let name = format!("decision {} (id {})", entry.seq, entry.request_id);
        let (Some(prev_hash), Some(hash)) = (&row.prev_hash, &row.hash) else {
            return Err(format!(
                "{name}: has no hash (written by an approval-service without the chain?)"
            ));
        };
        if prev_hash != self.head() {
            return Err(match &self.last {
                Some((seq, _)) => format!("{name}: prev_hash does not match decision {seq}"),
                None => format!("{name}: prev_hash is not the chain's start (64 zeros)"),
            });
        }
        if link(prev_hash, entry) != *hash {
            let missing = if entry.server.is_none() {
                " (its request is missing)"
            } else {
                ""
            };
            return Err(format!("{name}: hash does not match its content{missing}"));
        }
        if let Some((known, seen)) = &mut self.known_head {
            *seen |= known == hash;
        }
        self.last = Some((entry.seq, hash.clone()));
        self.count += 1;
        Ok(())
    }

    /// The last good row's hash: what the next row's `prev_hash` must be.
    pub fn head(&self) -> &str {
        self.last.as_ref().map_or(GENESIS, |(_, hash)| hash)
    }

    pub fn last_seq(&self) -> i64 {
        self.last.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// After the last row: the tail and the recorded head, which the links alone cannot vouch
    /// for. `numbered` is how far SQLite's AUTOINCREMENT counter for decisions has gone.
    pub fn finish(&self, numbered: i64) -> Result<String, String> {
        if numbered > self.last_seq() {
            return Err(format!(
                "decisions after decision {} were deleted (numbering reached {numbered})",
                self.last_seq()
            ));
        }
        if let Some((known, false)) = &self.known_head {
            return Err(format!("the known head {known} is not in the chain"));
        }
        Ok(format!(
            "decision log ok: {} decisions, head {}",
            self.count,
            self.head()
        ))
    }
}

const STORED: &str = "SELECT d.seq, d.request_id, d.decision, d.approver, d.reason, d.at, \
                      r.digest, r.server, r.tool, r.identity, r.arguments, d.prev_hash, d.hash \
                      FROM decisions d LEFT JOIN requests r ON r.id = d.request_id";

fn stored_from(row: &Row) -> rusqlite::Result<Stored> {
    Ok(Stored {
        entry: Entry {
            seq: row.get(0)?,
            request_id: row.get(1)?,
            decision: row.get(2)?,
            approver: row.get(3)?,
            reason: row.get(4)?,
            at: row.get(5)?,
            digest: row.get(6)?,
            server: row.get(7)?,
            tool: row.get(8)?,
            identity: row.get(9)?,
            arguments: row.get(10)?,
        },
        prev_hash: row.get(11)?,
        hash: row.get(12)?,
    })
}

/// Chain the just-inserted decision `seq` onto the log. Call it inside the transaction that
/// inserted the row: the head read here then cannot move before the row is written, and the
/// unique index on `prev_hash` refuses a second row claiming the same predecessor anyway.
pub fn seal(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    let prev: String = conn
        .query_row(
            "SELECT hash FROM decisions WHERE seq < ?1 AND hash IS NOT NULL \
             ORDER BY seq DESC LIMIT 1",
            [seq],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let stored = conn.query_row(&format!("{STORED} WHERE d.seq = ?1"), [seq], stored_from)?;
    conn.execute(
        "UPDATE decisions SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
        params![seq, prev, link(&prev, &stored.entry)],
    )?;
    Ok(())
}

fn has_chain(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('decisions') WHERE name = 'hash'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Give a database from before the chain its `prev_hash` and `hash` columns, chaining the
/// decisions already there in `seq` order: the chain vouches for those only from this moment.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !has_chain(&tx)? {
        tx.execute_batch(
            "ALTER TABLE decisions ADD COLUMN prev_hash TEXT;
             ALTER TABLE decisions ADD COLUMN hash TEXT;
             CREATE UNIQUE INDEX decisions_prev_hash ON decisions (prev_hash);",
        )?;
        let seqs = {
            let mut statement = tx.prepare("SELECT seq FROM decisions ORDER BY seq")?;
            let rows = statement.query_map([], |r| r.get::<_, i64>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        for seq in seqs {
            seal(&tx, seq)?;
        }
    }
    tx.commit()
}

/// The chain of the database at `path`, checked in one read transaction (a consistent
/// snapshot while the service keeps writing). `Ok(Err(why))` is a broken chain.
pub fn verify(path: &Path, known_head: Option<String>) -> Result<Result<String, String>, String> {
    let db_error = |e: rusqlite::Error| format!("{}: {e}", path.display());
    // Never created: a mistyped path is an error, not an empty, valid log.
    let mut conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(db_error)?;
    let tx = conn.transaction().map_err(db_error)?;
    if !has_chain(&tx).map_err(db_error)? {
        return Err(format!(
            "{}: no decision chain yet (start approval-service on it once to add one)",
            path.display()
        ));
    }
    let mut walk = Walk::new(known_head);
    let mut statement = tx
        .prepare(&format!("{STORED} ORDER BY d.seq"))
        .map_err(db_error)?;
    let mut rows = statement.query([]).map_err(db_error)?;
    while let Some(row) = rows.next().map_err(db_error)? {
        if let Err(broken) = walk.step(&stored_from(row).map_err(db_error)?) {
            return Ok(Err(broken));
        }
    }
    Ok(walk.finish(numbered(&tx).map_err(db_error)?))
}

/// How far AUTOINCREMENT has numbered decisions: a deleted tail leaves it past the last row.
fn numbered(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'decisions'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map(Option::unwrap_or_default)
}

fn verify_args(mut args: impl Iterator<Item = String>) -> Result<(String, Option<String>), String> {
    let mut db = std::env::var("APPROVAL_DB").ok();
    let mut known_head = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--db" => db = Some(value),
            "--known-head" => known_head = Some(value.trim().to_ascii_lowercase()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let db = db.ok_or("verify needs --db FILE")?;
    Ok((db, known_head))
}

/// `approval-service verify --db FILE [--known-head HASH]`: the verdict on stdout (so it can
/// be appended to a log kept elsewhere); exit 0 intact, 1 broken, 2 could not check.
pub fn command(args: impl Iterator<Item = String>) -> ExitCode {
    let verdict = verify_args(args).and_then(|(db, head)| verify(Path::new(&db), head));
    match verdict {
        Ok(Ok(ok)) => {
            println!("{ok}");
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            println!("decision log broken: {broken}");
            ExitCode::from(1)
        }
        Err(problem) => {
            eprintln!("approval-service verify: {problem}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn entry(seq: i64) -> Entry {
        Entry {
            seq,
            request_id: format!("req{seq}"),
            decision: "approved".into(),
            approver: "carol".into(),
            reason: "checked".into(),
            at: 1_700_000_000 + seq,
            digest: Some(format!("digest{seq}")),
            server: Some("wechat".into()),
            tool: Some("wechat_mass_send".into()),
            identity: None,
            arguments: Some(r#"{"to":"all"}"#.into()),
        }
    }

    /// Rows 1..=n chained as the service writes them.
    fn chain(n: i64) -> Vec<Stored> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let entry = entry(seq);
                let hash = link(&prev, &entry);
                let row = Stored {
                    entry,
                    prev_hash: Some(prev.clone()),
                    hash: Some(hash.clone()),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn walk(rows: &[Stored], known_head: Option<String>) -> Result<String, String> {
        let mut walk = Walk::new(known_head);
        for row in rows {
            walk.step(row)?;
        }
        walk.finish(rows.last().map_or(0, |r| r.entry.seq))
    }

    #[test]
    fn the_content_is_jcs_with_nulls_left_out() {
        let text = String::from_utf8(canonical(&entry(3))).unwrap();
        assert_eq!(
            text,
            r#"{"approver":"carol","arguments":"{\"to\":\"all\"}","at":1700000003,"decision":"approved","digest":"digest3","reason":"checked","request_id":"req3","seq":3,"server":"wechat","tool":"wechat_mass_send"}"#
        );
    }

    #[test]
    fn the_hash_is_sha256_of_prev_hash_then_content() {
        let e = entry(1);
        let mut bytes = GENESIS.as_bytes().to_vec();
        bytes.extend(canonical(&e));
        assert_eq!(link(GENESIS, &e), hex(&Sha256::digest(&bytes)));
        assert_eq!(link(GENESIS, &e).len(), 64);
        assert_ne!(link(GENESIS, &e), link(&link(GENESIS, &e), &e));
        // A known answer: sha256("abc").
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_field_is_covered() {
        let base = entry(2);
        let changes: [fn(&mut Entry); 11] = [
            |e| e.seq = 9,
            |e| e.request_id.push('x'),
            |e| e.decision = "denied".into(),
            |e| e.approver.push('x'),
            |e| e.reason.push('x'),
            |e| e.at += 1,
            |e| e.digest = Some("other".into()),
            |e| e.server = None,
            |e| e.tool = Some("other".into()),
            |e| e.identity = Some("agent-a".into()),
            |e| e.arguments = Some("{}".into()),
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(link(GENESIS, &base), link(GENESIS, &changed), "{changed:?}");
        }
    }

    #[test]
    fn an_intact_chain_passes_and_reports_its_head() {
        let rows = chain(4);
        let head = rows[3].hash.clone().unwrap();
        assert_eq!(
            walk(&rows, None),
            Ok(format!("decision log ok: 4 decisions, head {head}"))
        );
        assert_eq!(
            walk(&[], None),
            Ok(format!("decision log ok: 0 decisions, head {GENESIS}"))
        );
    }

    #[test]
    fn an_edited_row_is_named() {
        let mut rows = chain(4);
        rows[2].entry.reason = "nothing to see".into();
        assert_eq!(
            walk(&rows, None),
            Err("decision 3 (id req3): hash does not match its content".into())
        );
    }

    #[test]
    fn a_deleted_row_breaks_the_next_link() {
        let mut rows = chain(4);
        rows.remove(1);
        assert_eq!(
            walk(&rows, None),
            Err("decision 3 (id req3): prev_hash does not match decision 1".into())
        );
        let mut rows = chain(4);
        rows.remove(0);
        assert_eq!(
            walk(&rows, None),
            Err("decision 2 (id req2): prev_hash is not the chain's start (64 zeros)".into())
        );
    }

    #[test]
    fn reordered_rows_are_named() {
        let mut rows = chain(4);
        rows.swap(1, 2);
        assert_eq!(
            walk(&rows, None),
            Err("decision 3 (id req3): prev_hash does not match decision 1".into())
        );
    }

    #[test]
    fn a_row_without_hashes_is_named() {
        let mut rows = chain(3);
        rows[1].hash = None;
        assert_eq!(
            walk(&rows, None),
            Err(
                "decision 2 (id req2): has no hash (written by an approval-service without the chain?)"
                    .into()
            )
        );
    }

    #[test]
    fn a_missing_request_is_said() {
        let mut rows = chain(2);
        let e = &mut rows[1].entry;
        (e.digest, e.server, e.tool, e.arguments) = (None, None, None, None);
        assert_eq!(
            walk(&rows, None),
            Err(
                "decision 2 (id req2): hash does not match its content (its request is missing)"
                    .into()
            )
        );
    }

    #[test]
    fn a_cut_tail_shows_in_the_numbering() {
        let rows = chain(3);
        let mut walk = Walk::new(None);
        for row in &rows[..2] {
            walk.step(row).unwrap();
        }
        assert_eq!(
            walk.finish(3),
            Err("decisions after decision 2 were deleted (numbering reached 3)".into())
        );
    }

    #[test]
    fn a_known_head_must_still_be_in_the_chain() {
        let rows = chain(4);
        let second = rows[1].hash.clone().unwrap();
        assert!(walk(&rows, Some(second.clone())).is_ok());
        assert!(walk(&rows, Some(GENESIS.into())).is_ok());
        // The same log rewritten from decision 2 on: links and contents agree, the head not.
        let mut rewritten = chain(4);
        rewritten[1].entry.reason = "rewritten".into();
        let mut prev = rewritten[0].hash.clone().unwrap();
        for row in &mut rewritten[1..] {
            row.prev_hash = Some(prev.clone());
            prev = link(&prev, &row.entry);
            row.hash = Some(prev.clone());
        }
        assert!(walk(&rewritten, None).is_ok());
        assert_eq!(
            walk(&rewritten, Some(second.clone())),
            Err(format!("the known head {second} is not in the chain"))
        );
    }
}
