-- Issue 13: the record's queue row takes HOT updates.
--
-- Every callback updates its record's queue row about twice (stored: `pending` + 1; finished:
-- `pending` - 1; claims and releases: the lease). The index of due records was partial,
-- `(due_at) WHERE pending > 0`, and a column named in an index's predicate counts as indexed:
-- no update of `pending` could be HOT, so each one wrote a new version into both of the table's
-- indexes (6% of those updates were HOT under the ingest benchmark).
--
-- Now an idle record (nothing pending) is due at the end of time (i64::MAX) instead of being
-- left out by a predicate: the claim's `due_at <= now` range never reaches it, and only the
-- moves between idle and busy (and retries) change `due_at`. Every other update changes only
-- columns no index names, and with room left on each page (fillfactor) it stays HOT.
UPDATE okra_record_queue SET due_at = 9223372036854775807 WHERE pending = 0;
DROP INDEX okra_record_queue_due;
CREATE INDEX okra_record_queue_due ON okra_record_queue (due_at);
ALTER TABLE okra_record_queue SET (fillfactor = 50);
