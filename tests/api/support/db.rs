//! A database per test: a SQLite file in a temporary directory, or a fresh database on the
//! PostgreSQL server the tests are given; and the tools of tests that look under the store.

use std::{path::PathBuf, time::Duration};

use super::services::{postgres_url, PG_ENV};

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the server [`PG_ENV`] names.
    Postgres,
}

/// A database for one test: a SQLite file in a temp dir, or a fresh PostgreSQL database.
pub struct TestDb {
    /// The URL the receiver opens.
    pub url: String,
    /// Which store it is.
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, empty database of `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path: PathBuf = dir.path().join("okra.db");
                Self {
                    url: format!("sqlite://{}", path.display()),
                    backend,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let base = postgres_url().expect("Backend::Postgres needs the test URL");
                Self::unowned(fresh_postgres_database(&base).await, backend)
            }
        }
    }

    /// The database at `url`, of `backend`, that this value does not own: no temporary
    /// directory goes with it when it is dropped.
    pub(super) fn unowned(url: String, backend: Backend) -> Self {
        Self {
            url,
            backend,
            _dir: None,
        }
    }
}

/// Creates a uniquely named database on the server `base` points at; returns its URL.
pub async fn fresh_postgres_database(base: &str) -> String {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {PG_ENV}: {e}"));
    tokio::spawn(conn);
    drop_stale_databases(&client).await;
    let name = format!("okra_test_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (prefix, _) = base
        .split('?')
        .next()
        .unwrap()
        .rsplit_once('/')
        .expect("a postgres:// URL with a database name");
    format!("{prefix}/{name}")
}

/// A connection to the database at `url`, for tests that look under the store.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// The first column of every row `sql` answers, for tests that look under the store.
pub async fn first_column<T: tokio_postgres::types::FromSqlOwned>(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<T> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The PostgreSQL migrations in order, for tests that build a database of an earlier schema.
const POSTGRES_MIGRATIONS: [&str; 5] = [
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_operator_view.sql"),
    include_str!("../../../migrations/postgres/0003_lease_generation.sql"),
    include_str!("../../../migrations/postgres/0004_history_in_row.sql"),
    include_str!("../../../migrations/postgres/0005_idle_due.sql"),
];

/// Brings the empty database behind `client` to schema `version` (migrations 1 to `version`,
/// recorded as applied), as an earlier release left it; the store migrates it from there.
pub async fn postgres_schema(client: &tokio_postgres::Client, version: usize) {
    client
        .batch_execute(
            "CREATE TABLE okra_schema_migrations (
               version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for (i, sql) in POSTGRES_MIGRATIONS[..version].iter().enumerate() {
        client.batch_execute(sql).await.unwrap();
        client
            .execute(
                "INSERT INTO okra_schema_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await
            .unwrap();
    }
}

/// How old a test database must be before any test run drops it: no test runs this long.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Drops up to 100 test databases (of any run, on this server) created more than
/// [`STALE_AFTER`] ago, once per test process: each PostgreSQL test creates a database of its own, and without
/// this they pile up until the server's disk is full. The creation time is the UUIDv7 in the
/// name.
async fn drop_stale_databases(client: &tokio_postgres::Client) {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let Ok(rows) = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'okra\\_test\\_%'",
                    &[],
                )
                .await
            else {
                return;
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let stale = rows
                .iter()
                .map(|row| row.get::<_, String>(0))
                .filter(|name| {
                    name.strip_prefix("okra_test_")
                        .and_then(|id| id.get(..12))
                        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
                        .is_some_and(|created_ms| {
                            now_ms.saturating_sub(created_ms) > STALE_AFTER.as_millis()
                        })
                });
            // A bounded sweep per run (each drop checkpoints): a backlog drains over a few runs
            // without holding up this one.
            for name in stale.take(100) {
                // Another run may be sweeping too; a failed drop is its drop.
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        })
        .await;
}
