-- The operator's view: every handler attempt, counts kept on write, and the indexes that let a
-- filtered page (newest first, by `seq`) read only its own rows.

-- Every handler attempt of a callback (by the callback's `seq`): when, how it ended, what
-- failed. Never payload data. Deleted with its callback.
CREATE TABLE callback_attempts (
    seq         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,            -- unix milliseconds
    finished_at INTEGER NOT NULL,
    outcome     INTEGER NOT NULL,            -- 0 succeeded, 1 failed, 2 timed out, 3 panicked
    error       TEXT,
    PRIMARY KEY (seq, attempt)
) WITHOUT ROWID;

-- Callbacks per type and status, kept by every write that adds, moves or deletes one, so the
-- stats never count rows.
CREATE TABLE callback_counts (
    callback_type TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (callback_type, status)
) WITHOUT ROWID;
INSERT INTO callback_counts (callback_type, status, n)
    SELECT callback_type, status, count(*) FROM callbacks GROUP BY callback_type, status;

-- Pending and dead callbacks in received order (the index holds the rowid, `seq`): pages of
-- one status, the oldest pending, replaying the dead. Replaces (status, received_at).
DROP INDEX callbacks_unfinished;
CREATE INDEX callbacks_unfinished ON callbacks (status) WHERE status <> 1;
-- Pages of one callback type (any case) in received order. New entries go to the end of
-- their type's range: a handful of hot pages per group commit.
CREATE INDEX callbacks_by_type ON callbacks (upper(callback_type));
