-- Every callback received, with its delivery state. `seq` is the received order.
CREATE TABLE callbacks (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    record          TEXT    NOT NULL,
    callback_type   TEXT    NOT NULL,
    callback_code   TEXT,
    body            BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,            -- unix milliseconds
    status          INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 delivered, 2 dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    cycle_attempts  INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER,
    finished_at     INTEGER
);
-- One index serves both a record's pending callbacks in order (claims: record, status = 0,
-- by seq) and all of a record's callbacks (list; sorted by seq afterwards). Storing a callback
-- writes one entry here, not two (a full and a pending-only (record, seq) index).
CREATE INDEX callbacks_by_record ON callbacks (record, status, seq);
CREATE INDEX callbacks_by_status ON callbacks (status, received_at);

-- The dedup window: the last id stored for each body hash.
CREATE TABLE dedup (
    hash        BLOB    PRIMARY KEY,
    id          TEXT    NOT NULL,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per record: how many callbacks wait, when the head is due, and who holds the lease.
CREATE TABLE record_queue (
    record      TEXT    PRIMARY KEY,
    pending     INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER
) WITHOUT ROWID;
CREATE INDEX record_queue_due ON record_queue (due_at) WHERE pending > 0;
