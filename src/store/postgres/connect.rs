//! Connecting: the pools and their settings, the schema's migrations, and the bound on each
//! operation ([`Db`]), which turns what the database answered into the store's answer.

use std::{future::Future, str::FromStr, sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::{sync::mpsc, time::error::Elapsed};
use tokio_postgres::{Error as PgError, NoTls};

use super::{
    batch::{gather, BatchFailed, Waiting, MAX_BATCH},
    refusal, vacuum, PostgresStore,
};
use crate::{
    store::{StoreError, StoreOptions},
    telemetry::format_duration,
};

/// Schema changes, applied in order, each once, under an advisory lock so replicas starting
/// together do not race.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_operator_view.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_lease_generation.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_history_in_row.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_idle_due.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_sources.sql"),
    ),
];

/// How many batches of one kind (inserts, outcomes, releases) are committed at once: two, one
/// committing while the next gathers. More made every batch smaller and kept the server busy
/// with statements rather than rows (2 cores, PostgreSQL beside the receiver: four in flight
/// took 2,645–2,953 req/s at 0.38 transactions per callback and a p99 of 47–55 ms; two,
/// 3,569–3,902 at 0.22 and 31–35 ms); one alone let a slow commit hold up every writer behind
/// it (a p99 of 538 ms in one of two runs). Batches grow with the load up to [`MAX_BATCH`], so
/// two in flight is not what limits a larger server.
const IN_FLIGHT_BATCHES: usize = 2;

/// The key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x006f_6b72_616d_6967;
/// How many callbacks waiting to be stored make a burst, in which deliveries give way
/// ([`Delivery::acknowledgements_queued`](crate::store::Delivery::acknowledgements_queued)): at
/// the rates that keep this many waiting, the dispatcher's statements halve what is
/// acknowledged (BENCHMARKS.md, "Ingest, PostgreSQL").
const BURST_DEPTH: usize = 16;
/// How long a burst counts after its depth was last seen.
const BURST_HOLD: Duration = Duration::from_millis(200);

/// A connection pool and the bound on each operation. A store has two: one that only stores
/// callbacks, and one for everything else.
#[derive(Clone)]
pub(super) struct Db {
    /// The connections.
    pool: Pool,
    /// How long one operation may take before the store counts as unavailable.
    pub(super) timeout: Duration,
    /// The server, as messages about connecting to it name it.
    target: Arc<refusal::Target>,
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A failed query's error, its cause named: a connection that broke or never opened is
/// `database unreachable`; a refusal by the server (it answered) keeps its own message.
fn query_failed(e: PgError) -> StoreError {
    if e.code().is_none() || e.is_closed() {
        StoreError::Unavailable(format!("database unreachable: {e}"))
    } else if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) {
        StoreError::Unavailable(format!("disk full: {e}"))
    } else if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) {
        StoreError::Unavailable(format!("read-only: {e}"))
    } else {
        unavailable(e)
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`) with the default
    /// [`StoreOptions`] and runs migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Like [`PostgresStore::connect`], with explicit pool size and timeout. Migrations run
    /// under an advisory lock, so replicas starting together apply each one exactly once.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let parsed = tokio_postgres::Config::from_str(url);
        if let Some(refused) = refusal::tls_refused(url, parsed.as_ref().ok()) {
            return Err(refused);
        }
        let mut config = parsed.map_err(|e| {
            StoreError::Config(format!(
                "cannot read the PostgreSQL URL ({e}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB"
            ))
        })?;
        let target = Arc::new(refusal::Target::of(&config));
        let timeout = options.timeout.max(Duration::from_millis(100));
        // Settings the URL leaves unset: fail fast when the server is away, and find dead
        // connections while they sit idle in the pool.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_keepalives_idle() == Duration::from_secs(2 * 3600) {
            config.keepalives_idle(Duration::from_secs(30));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(10));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout((timeout * 3).max(Duration::from_secs(15)));
        }
        if config.get_application_name().is_none() {
            config.application_name("okra-callbacks");
        }
        let pool = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size.max(1))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .build()
                .map_err(|e| StoreError::Config(e.to_string()))
        };
        // Connections of their own for storing callbacks (up to a quarter of the pool), so
        // acknowledging Okra never waits behind the dispatcher's work; each carries one insert
        // transaction at a time, holding every callback that arrived while the other was
        // committing.
        let for_inserts = (options.max_connections / 4).clamp(1, IN_FLIGHT_BATCHES);
        let db = Db {
            pool: pool(options.max_connections.saturating_sub(for_inserts))?,
            timeout,
            target: target.clone(),
        };
        db.migrate().await?;
        let insert_db = Db {
            pool: pool(for_inserts)?,
            timeout,
            target,
        };
        let (inserts, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(insert_db, queue, for_inserts));
        // The dispatcher's writes: outcomes and releases, each a quarter of the pool at most.
        let for_dispatch = (options.max_connections / 4).clamp(1, IN_FLIGHT_BATCHES);
        let (finishes, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(db.clone(), queue, for_dispatch));
        let (releases, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(db.clone(), queue, for_dispatch));
        let alive = Arc::new(());
        tokio::spawn(vacuum::keep_clean(db.clone(), Arc::downgrade(&alive)));
        Ok(Self {
            db,
            inserts,
            waiting: Arc::new(Waiting::new(BURST_DEPTH, BURST_HOLD)),
            finishes,
            releases,
            held: Arc::default(),
            _alive: alive,
        })
    }
}

impl Db {
    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            // Every connection busy for the whole timeout: the database is slow, not away.
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::Unavailable(format!(
                    "timeout: no database connection was free within {}",
                    format_duration(self.timeout)
                ))
            }
            deadpool_postgres::PoolError::Backend(e) => {
                StoreError::Unavailable(refusal::connect_failed(&e, &self.target))
            }
            e => StoreError::Unavailable(format!("database unreachable: {e}")),
        })
    }

    /// Bounds one operation by the store's timeout.
    pub(super) async fn timed<T>(
        &self,
        op: impl Future<Output = Result<T, PgError>>,
    ) -> Result<Result<T, PgError>, Elapsed> {
        tokio::time::timeout(self.timeout, op).await
    }

    /// Turns an operation's result into the store's answer. A connection that did not answer
    /// in time may be half-dead (a network partition leaves it open but silent): it is closed
    /// instead of going back to the pool, where the next request would hang on it too.
    pub(super) fn result_of<T>(
        &self,
        client: Object,
        result: Result<Result<T, PgError>, Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(query_failed(e)),
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(format!(
                    "timeout: the database did not answer within {}",
                    format_duration(self.timeout)
                )))
            }
        }
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // Migrations may wait for another replica's, and may rewrite tables: allow them longer.
        let limit = self.timeout.max(Duration::from_secs(120));
        let result = tokio::time::timeout(limit, async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS okra_schema_migrations (
                     version INTEGER PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
            let current: i32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM okra_schema_migrations",
                    &[],
                )
                .await?
                .get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                if let Err(e) = tx.batch_execute(sql).await {
                    return Ok(Err(StoreError::Config(format!(
                        "migration {version} failed: {e}"
                    ))));
                }
                tx.execute(
                    "INSERT INTO okra_schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, PgError>(Ok(()))
        })
        .await;
        match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(format!(
                    "migrations did not finish within {}",
                    format_duration(limit)
                )))
            }
        }
    }

    /// Like [`Db::result_of`], telling apart what the database refused (worth trying the jobs one
    /// by one) from a lost connection or a timeout (not worth it: each would wait as long).
    pub(super) fn batch_result_of<T>(
        &self,
        client: Object,
        result: Result<Result<T, PgError>, Elapsed>,
    ) -> Result<T, BatchFailed> {
        let refused = matches!(&result, Ok(Err(e)) if e.code().is_some());
        self.result_of(client, result)
            .map_err(|error| BatchFailed { refused, error })
    }
}
