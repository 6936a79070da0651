"""Measures how a lake of several accounts is best laid out for the common
query, one account's month: the same rows written three ways, the query
timed on each with DuckDB.

    python account_layout.py OUT_DIR [--accounts 5] [--days 30] [--rows-per-day 20000]

  by_day          dt=YYYY-MM-DD/ partitions, accounts mixed in each file (as
                  the sink writes a batch: records in arrival order)
  by_day_sorted   dt=YYYY-MM-DD/ partitions, each file's rows ordered by
                  account, so that row-group statistics skip the others
  by_account_day  account=…/dt=…/ partitions

Prints one JSON object per layout: files, bytes, and the query's median
time over five runs.
"""
import argparse
import json
import os
import shutil
import statistics
import time

import duckdb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=20000)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(f"""
        CREATE TABLE events AS
        SELECT
            md5(i::varchar) AS event_id,
            'park-' || chr(97 + (hash(i) % {args.accounts})::int) AS account,
            'results/' || (i % 5000)::varchar AS object_id,
            TIMESTAMP '2026-10-01' + to_seconds(i * 86400 // {args.rows_per_day}) AS event_timestamp,
            repeat('x', 300) AS record_json
        FROM range({args.days * args.rows_per_day}) AS t(i)
    """)
    con.execute("ALTER TABLE events ADD COLUMN dt DATE")
    con.execute("UPDATE events SET dt = cast(event_timestamp AS date)")
    layouts = {
        "by_day": "SELECT * FROM events ORDER BY event_timestamp",
        "by_day_sorted": "SELECT * FROM events ORDER BY dt, account, event_timestamp",
        "by_account_day": "SELECT * FROM events ORDER BY event_timestamp",
    }
    partitions = {"by_day": "dt", "by_day_sorted": "dt", "by_account_day": "account, dt"}
    for name, select in layouts.items():
        path = os.path.join(args.out, name)
        con.execute(f"""COPY ({select}) TO '{path}'
            (FORMAT parquet, PARTITION_BY ({partitions[name]}), COMPRESSION zstd, ROW_GROUP_SIZE 8192)""")
    query = """
        SELECT count(*) AS rows, count(DISTINCT object_id) AS objects
        FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)
        WHERE account = 'park-c' AND dt BETWEEN DATE '2026-10-01' AND DATE '2026-10-30'
    """
    for name in layouts:
        path = os.path.join(args.out, name)
        files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        times = []
        for _ in range(5):
            fresh = duckdb.connect()
            fresh.execute("SET threads = 2")
            started = time.perf_counter()
            rows = fresh.execute(query.format(path=path)).fetchone()
            times.append(time.perf_counter() - started)
        print(json.dumps({
            "layout": name,
            "files": len(files),
            "bytes": sum(os.path.getsize(f) for f in files),
            "rows": rows[0],
            "median_ms": round(statistics.median(times) * 1000, 1),
        }))


if __name__ == "__main__":
    main()
