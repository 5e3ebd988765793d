-- The operator's view: every handler attempt, counts kept on write, and the indexes that let a
-- filtered page (newest first, by `seq`) read only its own rows.

-- Every handler attempt of a callback (by the callback's `seq`): when, how it ended, what
-- failed. Never payload data. Deleted with its callback.
CREATE TABLE okra_callback_attempts (
    seq         BIGINT   NOT NULL,
    attempt     INTEGER  NOT NULL,
    started_at  BIGINT   NOT NULL,            -- unix milliseconds
    finished_at BIGINT   NOT NULL,
    outcome     SMALLINT NOT NULL,            -- 0 succeeded, 1 failed, 2 timed out, 3 panicked
    error       TEXT,
    PRIMARY KEY (seq, attempt)
);

-- Callbacks per type and status, kept by every write that adds, moves or deletes one, so the
-- stats never count rows. `shard` is the writing connection's backend pid: concurrent
-- writers never share a row (no waits, no deadlocks); the stats add the shards up, and the
-- shards of connections that have gone are folded into shard 0.
CREATE TABLE okra_callback_counts (
    callback_type TEXT     NOT NULL,
    status        SMALLINT NOT NULL,
    shard         INTEGER  NOT NULL,
    n             BIGINT   NOT NULL,
    PRIMARY KEY (callback_type, status, shard)
);
INSERT INTO okra_callback_counts (callback_type, status, shard, n)
    SELECT callback_type, status, 0, count(*) FROM okra_callbacks GROUP BY callback_type, status;

-- Pending and dead callbacks in received order: pages of one status, the oldest pending,
-- replaying the dead. Delivered callbacks leave it, so delivery writes no entry at the end of
-- a large range. Replaces (status, received_at).
DROP INDEX okra_callbacks_by_status;
CREATE INDEX okra_callbacks_unfinished ON okra_callbacks (status, seq) WHERE status <> 1;
-- Pages of one callback type (any case) in received order.
CREATE INDEX okra_callbacks_by_type ON okra_callbacks (upper(callback_type), seq);
-- Pages of one record in received order (the (record, status, seq) index sorts by status
-- first).
CREATE INDEX okra_callbacks_by_record_seq ON okra_callbacks (record, seq);
