"""Writes the marts the dashboard shows as `data.js` (window.MARTS = …), so
that the page works opened from a file, without a server or a network:
every figure across all accounts, and again per account (the page's
account selector).

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
            (SELECT sum(results) FROM scoped.mart_result_pass_rate_daily) AS results,
            (SELECT round(sum(passed) * 100.0 / nullif(sum(passed) + sum(failed), 0), 1)
               FROM scoped.mart_result_pass_rate_daily) AS pass_rate_percent,
            (SELECT sum(missed) FROM scoped.mart_missed_checks_daily) AS missed_checks,
            (SELECT round(sum(downtime_minutes)) FROM scoped.mart_downtime_daily) AS downtime_minutes,
            (SELECT open_assignments FROM scoped.mart_assignments_daily
               ORDER BY snapshot_date DESC LIMIT 1) AS open_assignments,
            (SELECT overdue_assignments FROM scoped.mart_assignments_daily
               ORDER BY snapshot_date DESC LIMIT 1) AS overdue_assignments,
            (SELECT sum(events) FROM scoped.mart_events_daily) AS events,
            (SELECT max(last_received_at) FROM scoped.mart_events_daily) AS last_received_at
    """,
    "pass_rate_by_day": """
        SELECT result_date AS day,
               round(sum(passed) * 100.0 / nullif(sum(passed) + sum(failed), 0), 1) AS pass_rate_percent,
               sum(results) AS results
        FROM scoped.mart_result_pass_rate_daily GROUP BY 1 ORDER BY 1
    """,
    "pass_rate_by_location": """
        SELECT coalesce(l.location_name, p.location_id) AS location,
               round(sum(passed) * 100.0 / nullif(sum(passed) + sum(failed), 0), 1) AS pass_rate_percent,
               sum(results) AS results
        FROM scoped.mart_result_pass_rate_daily AS p
        LEFT JOIN scoped.dim_location AS l USING (account, location_id)
        GROUP BY 1 ORDER BY results DESC, location LIMIT 12
    """,
    "missed_by_day": """
        SELECT result_date AS day, sum(missed) AS missed, sum(results) AS results
        FROM scoped.mart_missed_checks_daily GROUP BY 1 ORDER BY 1
    """,
    "downtime_by_location": """
        SELECT coalesce(l.location_name, d.location_id) AS location,
               round(sum(downtime_minutes)) AS downtime_minutes,
               round(sum(blocking_minutes)) AS blocking_minutes
        FROM scoped.mart_downtime_daily AS d
        LEFT JOIN scoped.dim_location AS l USING (account, location_id)
        GROUP BY 1 ORDER BY downtime_minutes DESC, location LIMIT 12
    """,
    "assignments_by_day": """
        SELECT snapshot_date AS day, open_assignments, overdue_assignments
        FROM scoped.mart_assignments_daily ORDER BY 1
    """,
    "events_by_day": """
        SELECT event_date AS day, resource, sum(events) AS events
        FROM scoped.mart_events_daily GROUP BY 1, 2 ORDER BY 1, 2
    """,
}


def plain(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


SCOPED = [
    "mart_result_pass_rate_daily",
    "mart_missed_checks_daily",
    "mart_downtime_daily",
    "mart_assignments_daily",
    "mart_events_daily",
    "dim_location",
]


def figures(connection, account):
    """The page's figures over `account`'s rows (every account's when None)."""
    connection.execute("CREATE SCHEMA IF NOT EXISTS scoped")
    where = "true" if account is None else "account = '" + account.replace("'", "''") + "'"
    for name in SCOPED:
        connection.execute(
            f"CREATE OR REPLACE VIEW scoped.{name} AS SELECT * FROM marts.{name} WHERE {where}"
        )
    if account is None:
        # Open and overdue assignments add up over the accounts, day by day.
        connection.execute(
            """CREATE OR REPLACE VIEW scoped.mart_assignments_daily AS
               SELECT snapshot_date, sum(open_assignments) AS open_assignments,
                      sum(overdue_assignments) AS overdue_assignments
               FROM marts.mart_assignments_daily GROUP BY 1"""
        )
    shown = {}
    for name, sql in QUERIES.items():
        result = connection.execute(sql)
        columns = [c[0] for c in result.description]
        shown[name] = [{c: plain(v) for c, v in zip(columns, row)} for row in result.fetchall()]
    shown["kpis"] = shown["kpis"][0]
    return shown


def main():
    database, out_dir = sys.argv[1], sys.argv[2]
    connection = duckdb.connect()
    connection.execute(f"ATTACH '{database}' AS marts (READ_ONLY)")
    accounts = [row[0] for row in connection.execute(
        "SELECT DISTINCT account FROM marts.mart_events_daily ORDER BY 1").fetchall()]
    marts = figures(connection, None)
    marts["accounts"] = accounts
    marts["by_account"] = {account: figures(connection, account) for account in accounts}
    marts["built_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(f"{out_dir}/data.js", "w") as out:
        out.write("window.MARTS = ")
        json.dump(marts, out)
        out.write(";\n")


if __name__ == "__main__":
    main()
