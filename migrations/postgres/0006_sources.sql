-- Sources: the providers after Okra. Every callback names the source that sent it; the rows
-- stored before sources existed are Okra's (a constant default: no table rewrite). The
-- provider's event id, where it gives one, is kept beside it (the dedup key is derived from it).
--
-- A record's queue row and a type's counters are keyed per source without a new column: Okra's
-- keys stay the record and the type themselves, another source's are its name, U+001F and the
-- record (or type) (`store::queue_key`), so the existing rows stay valid as they are.
ALTER TABLE okra_callbacks ADD COLUMN source TEXT NOT NULL DEFAULT 'okra';
ALTER TABLE okra_callbacks ADD COLUMN event_id TEXT;
