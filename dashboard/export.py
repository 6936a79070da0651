"""Writes the marts the dashboard shows as `data.js` (window.MARTS = …), so
that the page works opened from a file, without a server or a network.

    python export.py MARTS_DUCKDB OUT_DIR
"""
import datetime
import decimal
import json
import sys

import duckdb

QUERIES = {
    # One figure each, shown as the cards at the top.
    "kpis": """
        SELECT
            (SELECT sum(results) FROM marts.mart_result_pass_rate_daily) AS results,
            (SELECT round(sum(passed) * 100.0 / nullif(sum(passed) + sum(failed), 0), 1)
               FROM marts.mart_result_pass_rate_daily) AS pass_rate_percent,
            (SELECT sum(missed) FROM marts.mart_missed_checks_daily) AS missed_checks,
            (SELECT round(sum(downtime_minutes)) FROM marts.mart_downtime_daily) AS downtime_minutes,
            (SELECT open_assignments FROM marts.mart_assignments_daily
               ORDER BY snapshot_date DESC LIMIT 1) AS open_assignments,
            (SELECT overdue_assignments FROM marts.mart_assignments_daily
               ORDER BY snapshot_date DESC LIMIT 1) AS overdue_assignments,
            (SELECT sum(events) FROM marts.mart_events_daily) AS events,
            (SELECT max(last_received_at) FROM marts.mart_events_daily) AS last_received_at
    """,
    "pass_rate_by_day": """
        SELECT result_date AS day,
               round(sum(passed) * 100.0 / nullif(sum(passed) + sum(failed), 0), 1) AS pass_rate_percent,
               sum(results) AS results
        FROM marts.mart_result_pass_rate_daily GROUP BY 1 ORDER BY 1
    """,
    "pass_rate_by_location": """
        SELECT coalesce(l.location_name, p.location_id) AS location,
               round(sum(passed) * 100.0 / nullif(sum(passed) + sum(failed), 0), 1) AS pass_rate_percent,
               sum(results) AS results
        FROM marts.mart_result_pass_rate_daily AS p
        LEFT JOIN marts.dim_location AS l USING (location_id)
        GROUP BY 1 ORDER BY results DESC, location LIMIT 12
    """,
    "missed_by_day": """
        SELECT result_date AS day, sum(missed) AS missed, sum(results) AS results
        FROM marts.mart_missed_checks_daily GROUP BY 1 ORDER BY 1
    """,
    "downtime_by_location": """
        SELECT coalesce(l.location_name, d.location_id) AS location,
               round(sum(downtime_minutes)) AS downtime_minutes,
               round(sum(blocking_minutes)) AS blocking_minutes
        FROM marts.mart_downtime_daily AS d
        LEFT JOIN marts.dim_location AS l USING (location_id)
        GROUP BY 1 ORDER BY downtime_minutes DESC, location LIMIT 12
    """,
    "assignments_by_day": """
        SELECT snapshot_date AS day, open_assignments, overdue_assignments
        FROM marts.mart_assignments_daily ORDER BY 1
    """,
    "events_by_day": """
        SELECT event_date AS day, resource, sum(events) AS events
        FROM marts.mart_events_daily GROUP BY 1, 2 ORDER BY 1, 2
    """,
}


def plain(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def main():
    database, out_dir = sys.argv[1], sys.argv[2]
    connection = duckdb.connect()
    connection.execute(f"ATTACH '{database}' AS marts (READ_ONLY)")
    marts = {}
    for name, sql in QUERIES.items():
        result = connection.execute(sql)
        columns = [c[0] for c in result.description]
        marts[name] = [{c: plain(v) for c, v in zip(columns, row)} for row in result.fetchall()]
    marts["kpis"] = marts["kpis"][0]
    marts["built_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(f"{out_dir}/data.js", "w") as out:
        out.write("window.MARTS = ")
        json.dump(marts, out)
        out.write(";\n")


if __name__ == "__main__":
    main()
