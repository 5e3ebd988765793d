-- Fencing: each claim of a record takes the next generation of its lease, and every renewal and
-- outcome write names the generation it holds, so the database refuses a stale replica's writes
-- (one that was paused or cut off while another took the record over).
ALTER TABLE okra_record_queue ADD COLUMN lease_gen BIGINT NOT NULL DEFAULT 0;
