"""Writes the marts the dashboard shows as `data.js` (window.MARTS = …), so
that the page works opened from a file, without a server or a network. The
rows are the daily marts' additive parts (minutes, counts) per account,
location and local day: the page sums them over the chosen accounts,
locations and dates, then divides (an average of daily percentages would
weigh a short day like a long one).

    python export.py MARTS_DUCKDB OUT_DIR
"""
import datetime
import decimal
import json
import sys

import duckdb

QUERIES = {
    "locations": """
        SELECT account, location_id, coalesce(location_name, location_id) AS name
        FROM marts.dim_location ORDER BY name
    """,
    "availability": """
        SELECT account, location_id, local_date AS day, opening_minutes, downtime_minutes,
               downtimes, repair_minutes, is_provisional, is_final
        FROM marts.mart_location_availability_daily ORDER BY day
    """,
    "categories": """
        SELECT account, location_id, local_date AS day, category, downtimes, downtime_minutes
        FROM marts.mart_downtime_category_daily ORDER BY day
    """,
    # Compliance counts Calendar and Ad Hoc slots only (compliance_pct set).
    "compliance": """
        SELECT account, location_id, result_date AS day, sum(completed) AS completed,
               sum(missed) AS missed, sum(missed_approved) AS missed_approved,
               sum(missed_rescheduled) AS missed_rescheduled, bool_and(is_final) AS is_final
        FROM marts.mart_inspection_compliance_daily
        WHERE compliance_pct IS NOT NULL
        GROUP BY ALL ORDER BY day
    """,
    "readiness": """
        SELECT account, location_id, local_date AS day, is_ready_before_opening AS ready
        FROM marts.mart_opening_readiness_daily ORDER BY day
    """,
    "backlog": """
        SELECT account, location_id, local_date AS day, sum(created) AS created, sum(resolved) AS resolved,
               sum(open_at_end) AS open_at_end, sum(overdue_at_end) AS overdue_at_end
        FROM marts.mart_assignment_backlog_daily GROUP BY ALL ORDER BY day
    """,
    "pass_rate": """
        SELECT account, location_id, result_date AS day, sum(passed) AS passed, sum(failed) AS failed
        FROM marts.mart_result_pass_rate_daily GROUP BY ALL ORDER BY day
    """,
    "events": """
        SELECT account, event_date AS day, resource, sum(events) AS events, max(last_received_at) AS last_received_at
        FROM marts.mart_events_daily GROUP BY ALL ORDER BY day
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
    marts["accounts"] = sorted({row["account"] for row in marts["locations"] + marts["events"]})
    marts["built_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(f"{out_dir}/data.js", "w") as out:
        out.write("window.MARTS = ")
        json.dump(marts, out)
        out.write(";\n")


if __name__ == "__main__":
    main()
