#!/usr/bin/env python3
"""Fill an embedded store with delivered callbacks quickly, for the memory benchmark.

    scripts/load-store.py PATH COUNT [HOURS]

PATH must be a store the receiver has created (its schema migrated, the receiver stopped).
Writes COUNT delivered callbacks over 500 records, received over the last HOURS (default 20:
inside the default 24 h dedup window, so every key is one the dedup filter must know), each
with its dedup key (SHA-256 of the body, as the receiver writes it) and the counts and record
queue rows the receiver keeps. It goes straight to the tables (SQL in batches of a million),
which is far faster than HTTP; the restart and ingest measured afterwards run the real binary.
"""
import hashlib
import sqlite3
import sys
import time

path, count = sys.argv[1], int(sys.argv[2])
hours = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
now = int(time.time() * 1000)
t0 = now - int(hours * 3600 * 1000)
step = max(1, (now - t0) // max(count, 1))

conn = sqlite3.connect(path, isolation_level=None)
conn.create_function("sha256", 1, lambda b: hashlib.sha256(b).digest(), deterministic=True)
conn.executescript("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000; PRAGMA temp_store = FILE;")
base = conn.execute("SELECT coalesce(max(seq), 0) FROM callbacks").fetchone()[0]
BATCH = 1_000_000
done = 0
while done < count:
    n = min(BATCH, count - done)
    lo, hi = base + done + 1, base + done + n
    conn.execute("BEGIN")
    conn.execute(
        """
        WITH RECURSIVE i(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM i WHERE n < ?2)
        INSERT INTO callbacks (seq, id, record, callback_type, callback_code, body, received_at,
                               status, attempts, next_attempt_at, finished_at)
        SELECT n, printf('0190a000-0000-7000-8000-%012d', n), 'bench-record-' || (n % 500),
               'BALANCE', 'BALANCE_PULLED',
               CAST(printf('{"callback_type":"BALANCE","callback_code":"BALANCE_PULLED","record":"bench-record-%d","ref":"load-%d","amount":%d,"currency":"NGN","status":"success"}', n % 500, n, n * 7 % 100000) AS BLOB),
               ?3 + (n - ?1) * ?4, 1, 1, NULL, ?3 + (n - ?1) * ?4 + 5
        FROM i
        """,
        (lo, hi, t0 + done * step, step),
    )
    conn.execute(
        "INSERT INTO dedup (hash, id, received_at) SELECT sha256(body), id, received_at"
        " FROM callbacks WHERE seq BETWEEN ?1 AND ?2 ORDER BY 1",
        (lo, hi),
    )
    conn.execute("COMMIT")
    done += n
    print(f"{done} loaded", file=sys.stderr, flush=True)

conn.execute("BEGIN")
conn.execute(
    "INSERT INTO callback_counts (callback_type, status, n) VALUES ('BALANCE', 1, ?1)"
    " ON CONFLICT (callback_type, status) DO UPDATE SET n = n + excluded.n",
    (count,),
)
conn.execute(
    "WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < 499)"
    " INSERT INTO record_queue (record, pending, due_at) SELECT 'bench-record-' || n, 0, ?1 FROM r"
    " WHERE true ON CONFLICT (record) DO NOTHING",
    (now,),
)
conn.execute("COMMIT")
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
conn.close()
