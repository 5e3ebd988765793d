-- The inbox log (`DB-inbox/` beside this file) acknowledges callbacks; the database thread
-- applies them here in batches and records, in the same transaction, the last log sequence
-- number applied. On start-up the log's frames past it are applied before anything is served.
CREATE TABLE inbox_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    applied_lsn INTEGER NOT NULL
);
INSERT INTO inbox_state (id, applied_lsn) VALUES (1, 0);
