-- Every callback received, with its delivery state. `seq` is the received order.
CREATE TABLE okra_callbacks (
    seq             BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT     NOT NULL UNIQUE,
    record          TEXT     NOT NULL,
    callback_type   TEXT     NOT NULL,
    callback_code   TEXT,
    body            BYTEA    NOT NULL,
    received_at     BIGINT   NOT NULL,            -- unix milliseconds
    status          SMALLINT NOT NULL DEFAULT 0,  -- 0 pending, 1 delivered, 2 dead
    attempts        INTEGER  NOT NULL DEFAULT 0,
    cycle_attempts  INTEGER  NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at BIGINT,
    finished_at     BIGINT
);
-- One index serves both a record's pending callbacks in order (claims: record, status = 0,
-- by seq) and all of a record's callbacks (list; sorted by seq afterwards). Storing a callback
-- writes one entry here, not two (a full and a pending-only (record, seq) index).
CREATE INDEX okra_callbacks_by_record ON okra_callbacks (record, status, seq);
CREATE INDEX okra_callbacks_by_status ON okra_callbacks (status, received_at);

-- The dedup window: the last id stored for each body hash (a unique key shared by all replicas).
CREATE TABLE okra_dedup (
    hash        BYTEA  PRIMARY KEY,
    id          TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);

-- One row per record: how many callbacks wait, when the head is due, and which replica holds
-- the lease.
CREATE TABLE okra_record_queue (
    record      TEXT    PRIMARY KEY,
    pending     INTEGER NOT NULL,
    due_at      BIGINT  NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX okra_record_queue_due ON okra_record_queue (due_at) WHERE pending > 0;
