//! What every statement shares: how a callback's row reads, how the counts move, the
//! database's clock, and an idle record's due time.

use bytes::BytesMut;
use tokio_postgres::{
    types::{IsNull, ToSql, Type},
    Row,
};

use crate::store::{
    conditions::{Conditions, Param},
    from_millis, Status, StoredCallback,
};

/// The database's clock in unix milliseconds, for every lease and due-time decision.
pub(super) const NOW_MS: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// The due time of an idle record (nothing pending): never. Kept in the `(due_at)` index
/// rather than left out by a predicate on `pending`, so the updates that change only the count
/// or the lease are HOT (migration 0005).
pub(super) const IDLE_DUE: &str = "9223372036854775807";

/// Adds `$3` to the count of callbacks in status `$2` under the counter key `$1` (a source's
/// type as [`queue_key`](crate::store::queue_key) makes it), in this connection's shard.
pub(super) const COUNT_SQL: &str =
    "INSERT INTO okra_callback_counts (callback_type, status, shard, n)
     VALUES ($1, $2, pg_backend_pid(), $3)
     ON CONFLICT (callback_type, status, shard) DO UPDATE SET n = okra_callback_counts.n + EXCLUDED.n";

/// A callback read from its row's [`COLUMNS`](crate::store::COLUMNS), in order.
pub(super) fn from_row(row: &Row) -> StoredCallback {
    StoredCallback {
        id: row.get(0),
        record: row.get(1),
        callback_type: row.get(2),
        callback_code: row.get(3),
        body: row.get::<_, Vec<u8>>(4).into(),
        received_at: from_millis(row.get(5)),
        status: Status::from_code(row.get::<_, i16>(6).into()),
        attempts: row.get::<_, i32>(7).try_into().unwrap_or(0),
        cycle_attempts: row.get::<_, i32>(8).try_into().unwrap_or(0),
        last_error: row.get(9),
        next_attempt_at: row.get::<_, Option<i64>>(10).map(from_millis),
        finished_at: row.get::<_, Option<i64>>(11).map(from_millis),
        source: row.get(12),
        event_id: row.get(13),
    }
}

/// The counter key ([`queue_key`](crate::store::queue_key) of the source and the type) of the
/// row aliased `c`, in SQL: the type itself for Okra's.
pub(super) const COUNTER_KEY: &str =
    "CASE WHEN c.source = 'okra' AND strpos(c.callback_type, chr(31)) = 0 \
     THEN c.callback_type ELSE c.source || chr(31) || c.callback_type END";

/// The parameters of `conditions`, as the driver takes them.
pub(super) fn params(conditions: &Conditions) -> Vec<&(dyn ToSql + Sync)> {
    conditions
        .params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect()
}

/// A filter's parameter binds as the value it holds (checked against the column's type).
impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql_checked(ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Status(v) => v.to_sql_checked(ty, out),
            Param::Statuses(v) => v.to_sql_checked(ty, out),
            Param::Int(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::Texts(v) => v.to_sql_checked(ty, out),
        }
    }
}
