-- Fewer index pages written per callback. Every page a transaction touches is written to the
-- WAL and fsynced at commit, so on the hot path (store a callback, then record its delivery) the
-- indexes should either be appended to or stay small:
--
-- * `callbacks_by_record (record, status, seq)` moved each entry within the record's (random)
--   leaf when the callback was delivered. Now `(record, seq)` is written once, at insert, and a
--   partial index holds only the pending callbacks, in order per record, for claims: it stays a
--   few pages while the dispatcher keeps up, so its pages are shared by a whole group commit.
-- * `callbacks_by_status (status, received_at)` moved every delivered entry to the end of the
--   delivered range. Now only pending and dead callbacks are indexed (the counts, the oldest
--   pending, replaying the dead); delivery removes the entry. Retention prunes by `seq`, which
--   follows the received order.
DROP INDEX callbacks_by_record;
DROP INDEX callbacks_by_status;
CREATE INDEX callbacks_by_record ON callbacks (record, seq);
CREATE INDEX callbacks_pending ON callbacks (record, seq) WHERE status = 0;
CREATE INDEX callbacks_unfinished ON callbacks (status, received_at) WHERE status <> 1;
