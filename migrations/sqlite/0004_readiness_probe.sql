-- One row `/readyz` rewrites on each check: readiness is a real write (a full disk or a read-only
-- file fails it), not only a read.
CREATE TABLE readiness_probe (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);
