//! Opening the embedded store: the lock that keeps it to one process, the file's settings and
//! migrations, and recovery — the inbox log's acknowledged frames applied before anything is
//! served.

use std::{path::Path, sync::Arc, time::Duration};

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};
use tokio::sync::mpsc;

use super::{
    apply, inbox,
    thread::{self, Job, MAX_BATCH},
    SqliteStore,
};
use crate::store::{StoreError, StoreOptions};

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../../migrations/sqlite/0001_init.sql")),
        M::up(include_str!(
            "../../../migrations/sqlite/0002_fewer_index_writes.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0003_operator_view.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0004_readiness_probe.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0005_history_in_row.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0006_inbox_log.sql"
        )),
        M::up(include_str!("../../../migrations/sqlite/0007_sources.sql")),
    ])
}

impl SqliteStore {
    /// Opens (creating the file, not its directory, if missing) and migrates the database file
    /// at `path`, and applies what its inbox log holds beyond the tables. The file is locked for this process: a second
    /// receiver on the same file is refused.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default()).await
    }

    /// [`SqliteStore::open`], its dedup filter laid out by `options` (the rest of them are
    /// PostgreSQL's).
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let dedup = inbox::Dedup {
            filter_bytes: options.dedup_filter_bytes,
            window: options.dedup_window,
        };
        let path = path.as_ref().to_owned();
        check_path(&path)?;
        let (conn, writer_parts) = tokio::task::spawn_blocking(move || recover(&path))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        let (jobs, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let (inbox_tx, inbox_rx) = mpsc::channel::<inbox::Append>(4 * MAX_BATCH);
        let applied = inbox::Applied::new(writer_parts.applied);
        let to_apply = Arc::new(inbox::ToApply::default());
        let db_inbox = thread::Inbox {
            to_apply: to_apply.clone(),
            applied: applied.clone(),
            _lock: writer_parts.lock,
        };
        std::thread::Builder::new()
            .name("okra-sqlite".into())
            .spawn(move || thread::run(conn, rx, db_inbox))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let wake_jobs = jobs.clone();
        let writer = tokio::task::spawn_blocking(move || {
            inbox::Writer::start(
                &writer_parts.db,
                writer_parts.dir,
                writer_parts.next_lsn,
                (applied, to_apply),
                dedup,
                Box::new(move || {
                    // A full queue wakes the thread anyway.
                    let _ = wake_jobs.try_send(Box::new(thread::Wake));
                }),
            )
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        std::thread::Builder::new()
            .name("okra-inbox".into())
            .spawn(move || writer.run(inbox_rx))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            jobs,
            inbox: inbox_tx,
        })
    }
}

/// Refuses, before anything is written, a path that names no file, and a file whose directory
/// does not exist: the file is created when missing, its directories never are, so a mistyped
/// path stops the start-up instead of growing a tree nobody meant.
fn check_path(path: &Path) -> Result<(), StoreError> {
    if path.as_os_str().is_empty() {
        return Err(StoreError::Config(
            "the SQLite database path is empty (`sqlite://` names no file): name one, e.g. sqlite://okra-callbacks.db (in the working directory) or sqlite:///var/lib/okra/callbacks.db (an absolute path)".into(),
        ));
    }
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(StoreError::Config(format!(
            "the directory {dir} of the SQLite file {file} does not exist: create it (mkdir -p {dir}) or name a file in an existing directory",
            dir = dir.display(),
            file = path.display(),
        ))),
        _ => Ok(()),
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let config_err = |e: rusqlite::Error| {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::Config(if busy {
            format!(
                "the SQLite file {} is in use by another process ({e}); the embedded store serves one receiver — use PostgreSQL to run several",
                path.display()
            )
        } else {
            format!("cannot open the SQLite file {}: {e}", path.display())
        })
    };
    let mut conn = Connection::open(path).map_err(config_err)?;
    // Every statement the store runs stays prepared (the default cache holds 16, fewer than
    // the store's statements, so a mixed load would re-parse them).
    conn.set_prepared_statement_cache_capacity(64);
    conn.busy_timeout(Duration::from_millis(200))
        .map_err(config_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;
         PRAGMA wal_autocheckpoint = 10000;",
    )
    .map_err(config_err)?;
    // wal_autocheckpoint: the checkpoint runs inside a commit, on the database thread, and
    // copies every page written since the last one back into the file (with an fsync). At the
    // default 1000 pages a group commit of ~100 callbacks (~200 pages) triggered one every ~5
    // commits; at 10000 (a WAL of up to ~40 MB) the same hot pages — index leaves, the record
    // queue — are copied once per many commits. Durability is unchanged: each commit is
    // fsynced to the WAL before it is acknowledged.
    migrations()
        .to_latest(&mut conn)
        .map_err(|e| StoreError::Config(format!("cannot migrate {}: {e}", path.display())))?;
    // One process owns the file, so any lease in it belonged to a previous run of this one.
    conn.execute(
        "UPDATE record_queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        [],
    )
    .map_err(config_err)?;
    Ok(conn)
}

/// What the inbox writer starts from, once [`recover`] has applied the log.
struct WriterParts {
    db: std::path::PathBuf,
    dir: std::path::PathBuf,
    lock: std::fs::File,
    applied: u64,
    next_lsn: u64,
}

/// Locks the store for this process, opens and migrates the database file, and applies the
/// inbox log's frames the tables do not hold yet (callbacks acknowledged before a crash); the
/// log is then empty.
fn recover(path: &Path) -> Result<(Connection, WriterParts), StoreError> {
    let dir = inbox::dir_of(path);
    let lock = inbox::lock(&dir, path, Duration::from_secs(2))?;
    let conn = open_connection(path)?;
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!(
            "cannot apply the inbox log {} to {}: {what}: {e}",
            dir.display(),
            path.display()
        ))
    };
    let applied = apply::applied_lsn(&conn).map_err(|e| broken("reading its position", &e))?;
    let (batch, last) = inbox::recover(&dir, applied).map_err(|e| broken("reading it", &e))?;
    let applied = if let Some(batch) = batch {
        let batch = Arc::new(batch);
        let tx = conn
            .unchecked_transaction()
            .map_err(|e| broken("starting", &e))?;
        let lsn = apply::apply(&tx, &[batch]).map_err(|e| broken("applying", &e))?;
        tx.commit().map_err(|e| broken("committing", &e))?;
        lsn.unwrap_or(applied)
    } else {
        applied
    };
    inbox::clear(&dir).map_err(|e| broken("clearing it", &e))?;
    Ok((
        conn,
        WriterParts {
            db: path.to_owned(),
            dir,
            lock,
            applied,
            next_lsn: last.max(applied) + 1,
        },
    ))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rusqlite::params;
    use sha2::Digest;

    use super::*;
    use crate::store::{
        from_millis, millis,
        sqlite::tests::{callbacks_of, new_cb},
        Attempt, AttemptOutcome, Delivery, Filter, Ingest, OperatorView, Outcome, Status,
    };

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    /// Writes a database file at schema `version` holding what `sql` writes.
    fn file_at(path: &Path, version: usize, sql: &str) -> Connection {
        let mut conn = Connection::open(path).unwrap();
        migrations().to_version(&mut conn, version).unwrap();
        conn.execute_batch(sql).unwrap();
        conn
    }

    #[tokio::test]
    async fn an_empty_path_or_a_missing_directory_is_refused_and_nothing_is_created() {
        let err = SqliteStore::open("").await.err().unwrap().to_string();
        assert!(err.contains("path is empty"), "{err}");
        assert!(err.contains("sqlite://okra-callbacks.db"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing").join("dir");
        let err = SqliteStore::open(missing.join("x.db"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!(
                "the directory {} of the SQLite file",
                missing.display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("mkdir -p {}", missing.display())),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Writes a database file at schema `version` as that release left it: `callbacks_sql`'s
    /// rows (record `r1`, one of them pending), the record's queue row, and `body`'s dedup key
    /// naming `old-pending`.
    fn file_of_schema(path: &Path, version: usize, callbacks_sql: &str, body: &str) {
        let now = millis(Utc::now());
        let conn = file_at(path, version, callbacks_sql);
        conn.execute(
            "INSERT INTO record_queue (record, pending, due_at) VALUES ('r1', 1, ?1)",
            [now],
        )
        .unwrap();
        let hash = sha2::Sha256::digest(body.as_bytes()).to_vec();
        conn.execute(
            "INSERT INTO dedup (hash, id, received_at) VALUES (?1, 'old-pending', ?2)",
            params![hash, now],
        )
        .unwrap();
    }

    /// A file written by the previous release (migration 0001 only) opens with its callbacks,
    /// their states and the dedup window intact.
    #[tokio::test]
    async fn a_file_of_the_previous_schema_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        let body = r#"{"callback_type":"AUTH","record":"r1","n":1}"#;
        file_of_schema(
            &path,
            1,
            &format!(
                "INSERT INTO callbacks (id, record, callback_type, body, received_at, status, attempts, next_attempt_at, finished_at)
                   VALUES ('old-done', 'r1', 'AUTH', X'7B7D', {now}, 1, 1, NULL, {now}),
                          ('old-pending', 'r1', 'AUTH', X'7B7D', {now}, 0, 0, {now}, NULL);"
            ),
            body,
        );
        let store = SqliteStore::open(&path).await.unwrap();
        let listed = callbacks_of(&store, "r1").await;
        let states: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            states,
            [
                ("old-done", Status::Delivered),
                ("old-pending", Status::Pending)
            ]
        );
        let again = store
            .insert(new_cb("new", "r1", body), Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((again.id.as_str(), again.duplicate), ("old-pending", true));
        let claims = store
            .claim("w", 10, 10, Duration::from_secs(60))
            .await
            .unwrap();
        let ids: Vec<_> = claims[0].callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["old-pending"],
            "the pending callback is still claimed"
        );
        let backlog = store.stats().await.unwrap();
        assert_eq!((backlog.pending, backlog.dead), (1, 0));
    }

    /// A file of the schema before the inbox log (0005), as the previous release left it:
    /// opens with its callbacks, their counts and dedup keys; new callbacks go through the log
    /// and join them, in order, and all of it is there again after a restart.
    #[tokio::test]
    async fn a_file_of_schema_0005_opens_with_its_data_and_takes_new_callbacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        let body = r#"{"callback_type":"AUTH","record":"r1","n":1}"#;
        file_of_schema(
            &path,
            5,
            &format!(
                "INSERT INTO callbacks (id, record, callback_type, body, received_at, status, attempts, next_attempt_at, finished_at, history)
                   VALUES ('old-done', 'r1', 'AUTH', X'7B7D', {now}, 1, 1, NULL, {now}, '[[1,{now},{now},0,null]]'),
                          ('old-pending', 'r1', 'AUTH', X'7B7D', {now}, 0, 0, {now}, NULL, '[]');
                 INSERT INTO callback_counts (callback_type, status, n) VALUES ('AUTH', 0, 1), ('AUTH', 1, 1);"
            ),
            body,
        );
        let window = Duration::from_secs(3600);
        {
            let store = SqliteStore::open(&path).await.unwrap();
            let again = store
                .insert(new_cb("dup", "r1", body), window)
                .await
                .unwrap();
            assert_eq!((again.id.as_str(), again.duplicate), ("old-pending", true));
            let fresh = store
                .insert(new_cb("new", "r1", r#"{"n":2}"#), window)
                .await
                .unwrap();
            assert_eq!((fresh.id.as_str(), fresh.duplicate), ("new", false));
            let history = store.history("old-done").await.unwrap();
            assert_eq!(history.len(), 1, "{history:?}");
            let stats = store.stats().await.unwrap();
            assert_eq!((stats.pending, stats.delivered), (2, 1), "{stats:?}");
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let listed = callbacks_of(&store, "r1").await;
        let states: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            states,
            [
                ("old-done", Status::Delivered),
                ("old-pending", Status::Pending),
                ("new", Status::Pending)
            ]
        );
        let claims = store
            .claim("w", 10, 10, Duration::from_secs(60))
            .await
            .unwrap();
        let ids: Vec<_> = claims[0].callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["old-pending", "new"], "claimed in received order");
    }

    /// The state `kill -9` leaves between an acknowledgement and its apply: frames in the log
    /// past the applied LSN, and a torn frame after them (a write cut short, never
    /// acknowledged). Opening applies the whole frames once, in order, drops the torn one, and
    /// dedup knows them; a second open applies nothing again.
    #[tokio::test]
    async fn acknowledged_frames_left_in_the_log_are_applied_once_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let window = Duration::from_secs(3600);
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .insert(new_cb("first", "r", r#"{"n":0}"#), window)
            .await
            .unwrap();
        drop(store);
        // What the crashed process had acknowledged but not applied.
        let applied = loop {
            // The dropped store's threads finish applying and let go of the file.
            let conn = Connection::open(&path).unwrap();
            let lsn = apply::applied_lsn(&conn).unwrap();
            if lsn >= 1 {
                break lsn;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut bytes = Vec::new();
        for (i, (id, body)) in [
            ("a", r#"{"n":1}"#),
            ("b", r#"{"n":2}"#),
            ("torn", r#"{"n":3}"#),
        ]
        .iter()
        .enumerate()
        {
            inbox::encode_for_test(applied + 1 + i as u64, &new_cb(id, "r", body), &mut bytes);
        }
        bytes.truncate(bytes.len() - 5);
        let log = inbox::dir_of(&path);
        std::fs::write(log.join(format!("{:020}.log", applied + 1)), &bytes).unwrap();

        for _ in 0..2 {
            let store = SqliteStore::open(&path).await.unwrap();
            let ids: Vec<String> = callbacks_of(&store, "r")
                .await
                .into_iter()
                .map(|c| c.id)
                .collect();
            assert_eq!(ids, ["first", "a", "b"]);
            let again = store
                .insert(new_cb("copy", "r", r#"{"n":2}"#), window)
                .await
                .unwrap();
            assert_eq!((again.id.as_str(), again.duplicate), ("b", true));
            let torn = store
                .insert(new_cb("resent", "r", r#"{"n":3}"#), window)
                .await
                .unwrap();
            assert!(!torn.duplicate, "the torn frame was never stored");
            assert_eq!(store.stats().await.unwrap().pending, 4);
            let claims = store
                .claim("w", 10, 10, Duration::from_secs(60))
                .await
                .unwrap();
            let order: Vec<_> = claims[0].callbacks.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(order, ["first", "a", "b", "resent"]);
            // The second round reopens with the resent copy stored: delete it again so the
            // round sees the same state (and proves nothing was applied twice).
            store
                .call(|conn| {
                    conn.execute_batch(
                        "DELETE FROM callbacks WHERE id = 'resent';
                         DELETE FROM dedup WHERE id = 'resent';
                         UPDATE callback_counts SET n = n - 1 WHERE status = 0;
                         UPDATE record_queue SET pending = pending - 1, lease_owner = NULL, lease_until = NULL;",
                    )
                })
                .await
                .unwrap();
        }
    }

    /// A file with a table of attempts (schema 0004) opens with each callback's history, in
    /// attempt order, read from its own row; the table is gone; a new attempt is appended.
    #[tokio::test]
    async fn a_file_with_an_attempts_table_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        file_at(
            &path,
            4,
            &format!(
                "INSERT INTO callbacks (id, record, callback_type, body, received_at, status, attempts, next_attempt_at, finished_at)
                   VALUES ('a', 'r1', 'AUTH', X'7B7D', 1000, 1, 2, NULL, 5000),
                          ('b', 'r2', 'AUTH', X'7B7D', 1001, 0, 1, {now}, NULL);
                 INSERT INTO record_queue (record, pending, due_at) VALUES ('r2', 1, {now});
                 -- Written out of order: the history is read in attempt order.
                 INSERT INTO callback_attempts (seq, attempt, started_at, finished_at, outcome, error)
                   VALUES (1, 2, 3000, 4000, 0, NULL),
                          (1, 1, 1000, 2000, 1, 'the forward target answered 503'),
                          (2, 1, 5000, 6000, 2, 'timed out');"
            ),
        );
        let store = SqliteStore::open(&path).await.unwrap();
        let summary = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .history(id)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|a| {
                        (
                            a.attempt,
                            millis(a.started_at),
                            millis(a.finished_at),
                            a.outcome,
                            a.error,
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let failed = Some("the forward target answered 503".to_owned());
        assert_eq!(
            summary("a").await,
            [
                (1, 1000, 2000, AttemptOutcome::Failed, failed),
                (2, 3000, 4000, AttemptOutcome::Succeeded, None),
            ]
        );
        let tables: i64 = store
            .call(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'callback_attempts'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(
            tables, 0,
            "the attempts table is dropped once its rows moved"
        );
        // The pending one's next attempt joins its moved history.
        let claimed = store
            .claim("w", 10, 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(claimed[0].callbacks[0].id, "b");
        let attempt = Attempt {
            attempt: 2,
            started_at: from_millis(7000),
            finished_at: from_millis(8000),
            outcome: AttemptOutcome::Succeeded,
            error: None,
        };
        store
            .finish_attempt(
                "w",
                &claimed[0].callbacks[0],
                Outcome::Delivered,
                &attempt,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(
            summary("b").await,
            [
                (
                    1,
                    5000,
                    6000,
                    AttemptOutcome::TimedOut,
                    Some("timed out".to_owned())
                ),
                (2, 7000, 8000, AttemptOutcome::Succeeded, None),
            ]
        );
    }

    /// A file of the schema before the operator's view (0002) opens under 0003 with its
    /// callbacks counted per type and status, found by the new queries, with an empty history.
    #[tokio::test]
    async fn a_file_of_schema_0002_gets_counts_and_indexes_for_the_operators_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        file_at(
            &path,
            2,
            &format!(
                "INSERT INTO callbacks (id, record, callback_type, callback_code, body, received_at, status, attempts, next_attempt_at, finished_at)
                   VALUES ('a', 'r1', 'AUTH', 'AUTH_SUCCESS', X'7B7D', {now}, 1, 1, NULL, {now}),
                          ('b', 'r1', 'AUTH', 'AUTH_SUCCESS', X'7B7D', {now} + 1, 2, 3, NULL, {now}),
                          ('c', 'r2', 'Custom', NULL, X'7B7D', {now} + 2, 0, 0, {now}, NULL);
                 INSERT INTO record_queue (record, pending, due_at) VALUES ('r2', 1, {now});"
            ),
        );
        let store = SqliteStore::open(&path).await.unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.pending, stats.delivered, stats.dead), (1, 1, 1));
        assert_eq!(
            stats.by_type,
            [("AUTH".to_owned(), 2), ("Custom".to_owned(), 1)]
        );
        assert_eq!(stats.oldest_pending_at, Some(from_millis(now + 2)));
        let dead = Filter {
            statuses: vec![Status::Dead],
            ..Filter::default()
        };
        let page = store.search(&dead, 10, None).await.unwrap();
        let ids: Vec<_> = page.callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b"]);
        let custom = Filter {
            callback_type: Some("CUSTOM".into()),
            ..Filter::default()
        };
        let page = store.search(&custom, 10, None).await.unwrap();
        assert_eq!(
            page.callbacks.len(),
            1,
            "an unknown type, matched in any case"
        );
        assert!(store.history("b").await.unwrap().is_empty());
        // The counts go on from there.
        assert_eq!(store.replay_matching(&dead).await.unwrap(), 1);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.pending, stats.delivered, stats.dead), (2, 1, 0));
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let _first = SqliteStore::open(&path).await.unwrap();
        let err = recover(&path).err().unwrap();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }
}
