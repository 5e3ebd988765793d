-- The attempt history moves into its callback's row: the outcome's UPDATE rewrites that row
-- anyway, so appending an entry there saves a B-tree insert per attempt on the delivering path.
-- It is kept and deleted with its callback by construction. Each entry is a compact JSON array:
-- [attempt, started_at, finished_at, outcome, error] (times in unix milliseconds; outcome 0
-- succeeded, 1 failed, 2 timed out, 3 panicked; error text or null). Never payload data.
ALTER TABLE callbacks ADD COLUMN history TEXT NOT NULL DEFAULT '[]';
UPDATE callbacks SET history = (
    SELECT json_group_array(json_array(attempt, started_at, finished_at, outcome, error))
    FROM callback_attempts a WHERE a.seq = callbacks.seq
)
WHERE seq IN (SELECT seq FROM callback_attempts);
DROP TABLE callback_attempts;
