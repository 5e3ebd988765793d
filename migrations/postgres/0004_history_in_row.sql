-- Fewer writes per callback on the acknowledging and delivering paths (issues 11 and 12: the
-- PostgreSQL ingest benchmark is not to be slower than before the operator's view).
--
-- 1. The attempt history moves into its callback's row. The outcome's UPDATE rewrites that row
--    anyway (a status change is never a HOT update), so appending an entry there costs a few
--    bytes, where a row of its own cost a heap tuple and an index entry per attempt. It is kept
--    and deleted with its callback by construction. Each entry is a compact array:
--    [attempt, started_at, finished_at, outcome, error] (times in unix milliseconds; outcome 0
--    succeeded, 1 failed, 2 timed out, 3 panicked; error text or null). Never payload data.
ALTER TABLE okra_callbacks ADD COLUMN history JSONB NOT NULL DEFAULT '[]';
UPDATE okra_callbacks c SET history = h.entries
FROM (
    SELECT seq, jsonb_agg(jsonb_build_array(attempt, started_at, finished_at, outcome, error)
                          ORDER BY attempt) AS entries
    FROM okra_callback_attempts GROUP BY seq
) h
WHERE c.seq = h.seq;
DROP TABLE okra_callback_attempts;

-- 2. A record's pages merge its three (record, status, seq) ranges instead of reading a
--    (record, seq) index of their own: one index entry less per insert and per outcome.
DROP INDEX okra_callbacks_by_record_seq;
