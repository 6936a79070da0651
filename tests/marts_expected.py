"""Mobaro's figures computed from the simulator's records, independently of
the dbt package: plain Python over the current records (what Mobaro would
show), with the definitions of Mobaro's help centre.

Usage: marts_expected.py RECORDS.json > EXPECTED.json
RECORDS.json: {"as_of": ISO, "grace_hours": N, "final_through": DATE (what
the downtimes table publishes), "location_versions":
[{"at": ISO, "record": {...}}, ...] (every version of every Location, since
when it held), "downtimes": [...], "results": [...], "assignments": [...]}
(current, not deleted). Prints one list of rows per mart.
"""

import json
import statistics
import sys
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

UTC = timezone.utc
PASSED = {"Passed", "Passed with remarks"}
FAILED = {"Failed"}
MISSED = {"Missed"}
INVALIDATED = {"Invalidated"}
CLOSED = {"Resolved", "Closed"}
FINISHED = {"Finished", "Done"}
COUNTED_KINDS = {"Calendar", "Ad Hoc"}


def instant(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def at_local(zone, day, clock):
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def minutes(start, end):
    return (end - start).total_seconds() / 60.0


def overlap(a_start, a_end, b_start, b_end):
    return max(0.0, minutes(max(a_start, b_start), min(a_end, b_end)))


class Calendar:
    """A Location record's opening hours: weekly hours (None: around the
    clock) and planned closures."""

    def __init__(self, record):
        hours = record.get("openingHours")
        self.weekly = None
        self.closures = set()
        if hours is not None and hours.get("weekly") is not None:
            self.weekly = {}
            for entry in hours["weekly"]:
                opens = time.fromisoformat(entry["opens"])
                closes = time.fromisoformat(entry["closes"])
                self.weekly.setdefault(entry["weekday"].lower(), []).append((opens, closes))
            self.closures = {c["date"] for c in hours.get("closures") or []}


class Location:
    """A location and its calendars over time: `versions` are (since, record)
    in time order; a day follows the calendar in force when it began (the
    first one also before it), in the zone of the latest record."""

    def __init__(self, versions):
        versions = sorted(versions, key=lambda v: v[0])
        self.id = versions[-1][1]["id"]
        self.zone = ZoneInfo(versions[-1][1].get("timeZone") or "UTC")
        self.calendars = [(since, Calendar(record)) for since, record in versions]

    def calendar(self, day):
        start = self.day_bounds(day)[0]
        chosen = self.calendars[0][1]
        for since, calendar in self.calendars:
            if since <= start:
                chosen = calendar
        return chosen

    def local_date(self, moment):
        return moment.astimezone(self.zone).date()

    def day_bounds(self, day):
        return at_local(self.zone, day, time(0)), at_local(self.zone, day + timedelta(days=1), time(0))

    def windows(self, day):
        calendar = self.calendar(day)
        if calendar.weekly is None:
            return [self.day_bounds(day)]
        if day.isoformat() in calendar.closures:
            return []
        found = []
        for opens, closes in calendar.weekly.get(day.strftime("%A").lower(), []):
            end_day = day + timedelta(days=1) if closes <= opens else day
            found.append((at_local(self.zone, day, opens), at_local(self.zone, end_day, closes)))
        return found


def days_between(first, last):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def main():
    data = json.load(open(sys.argv[1]))
    as_of = instant(data["as_of"])
    grace = timedelta(hours=data["grace_hours"])
    # The last UTC day the downtimes table's compaction has closed.
    closed_until = datetime.combine(date.fromisoformat(data["final_through"]) + timedelta(days=1), time(0), tzinfo=UTC)
    versions = {}
    for version in data["location_versions"]:
        versions.setdefault(version["record"]["id"], []).append((instant(version["at"]), version["record"]))
    locations = {id: Location(v) for id, v in versions.items()}

    downtimes = []
    for record in data["downtimes"]:
        start = instant(record.get("start"))
        if start is None:
            continue
        end = instant(record.get("end"))
        is_open = end is None and record.get("status") not in CLOSED
        downtimes.append({
            "id": record["id"],
            "location": record["location"]["id"],
            "category": (record.get("category") or {}).get("name") or "Uncategorised",
            "start": start,
            "end": end if end is not None else max(start, as_of),
            "open": is_open,
        })
    results = data["results"]
    assignments = data["assignments"]

    firsts = [d["start"] for d in downtimes]
    firsts += [instant(r.get("schedule", {}).get("slot") or r.get("started") or r.get("created")) for r in results]
    firsts += [instant(a["created"]) for a in assignments]
    first = min(firsts)

    availability, categories, readiness = [], {}, []
    for location in locations.values():
        own = sorted((d for d in downtimes if d["location"] == location.id), key=lambda d: (d["start"], d["id"]))
        # Each downtime's minutes in hours, per window.
        in_hours = {}
        for downtime in own:
            per_day = {}
            day = location.local_date(downtime["start"]) - timedelta(days=1)
            while at_local(location.zone, day, time(0)) < downtime["end"]:
                for opens, closes in location.windows(day):
                    if opens < downtime["end"] and downtime["start"] < closes:
                        per_day[day] = per_day.get(day, 0.0) + overlap(downtime["start"], downtime["end"], opens, closes)
                day += timedelta(days=1)
            in_hours[downtime["id"]] = per_day
            for day, value in per_day.items():
                key = (location.id, day.isoformat(), downtime["category"])
                row = categories.setdefault(key, {"downtimes": 0, "downtime_minutes": 0.0})
                row["downtime_minutes"] += value
                if day == min(per_day):
                    row["downtimes"] += 1
        # Overlapping downtimes merged.
        sessions = []
        for downtime in own:
            if sessions and downtime["start"] <= sessions[-1][1]:
                sessions[-1][1] = max(sessions[-1][1], downtime["end"])
            else:
                sessions.append([downtime["start"], downtime["end"]])
        for day in days_between(location.local_date(first) - timedelta(days=1), location.local_date(as_of)):
            windows = location.windows(day)
            opening = sum(minutes(o, c) for o, c in windows)
            down = sum(overlap(s, e, o, c) for o, c in windows for s, e in sessions)
            starting = [d for d in own if in_hours[d["id"]] and min(in_hours[d["id"]]) == day]
            repair = sum(sum(in_hours[d["id"]].values()) for d in starting)
            elapsed = sum(minutes(d["start"], d["end"]) for d in starting)
            day_start, day_end = location.day_bounds(day)
            still_open = sum(1 for d in own if d["open"] and d["start"] < day_end and day_start < d["end"])
            count = len(starting)
            availability.append({
                "location_id": location.id,
                "local_date": day.isoformat(),
                "opening_minutes": opening,
                "downtime_minutes": down,
                "operational_minutes": opening - down,
                "uptime_pct": 100.0 * (opening - down) / opening if opening else None,
                "downtime_pct": 100.0 * down / opening if opening else None,
                "downtimes": count,
                "mttr_minutes": repair / count if count else None,
                "mttr_elapsed_minutes": elapsed / count if count else None,
                "mtbf_hours": (opening - down) / 60.0 / count if count else None,
                "is_provisional": still_open > 0,
                "is_final": still_open == 0 and day_end + grace <= as_of and day_end <= closed_until,
            })
            if location.calendar(day).weekly is not None and windows:
                first_open = min(o for o, _ in windows)
                critical = [
                    r for r in results
                    if r["location"]["id"] == location.id
                    and r.get("checklist", {}).get("criticalForOperation")
                    and r["status"] not in INVALIDATED
                    and result_date(r, locations) == day
                ]
                if critical:
                    passed = sum(
                        1 for r in critical
                        if r["status"] in PASSED and instant(r.get("submitted")) is not None
                        and instant(r["submitted"]) <= first_open
                    )
                    readiness.append({
                        "location_id": location.id,
                        "local_date": day.isoformat(),
                        "critical_checks": len(critical),
                        "passed_before_opening": passed,
                        "is_ready_before_opening": passed == len(critical),
                    })

    compliance = {}
    for r in results:
        key = (r["location"]["id"], result_date(r, locations).isoformat(), r["checklist"]["id"],
               (r.get("schedule") or {}).get("kind") or "Unknown")
        row = compliance.setdefault(key, {"slots": 0, "completed": 0, "missed": 0, "missed_approved": 0,
                                          "missed_rescheduled": 0, "scores": []})
        row["slots"] += 1
        if r["status"] in PASSED | FAILED:
            row["completed"] += 1
            if r.get("score") is not None:
                row["scores"].append(r["score"])
        if r["status"] in MISSED:
            row["missed"] += 1
            handling = (r.get("missed") or {}).get("handling")
            row["missed_approved"] += handling == "Approved"
            row["missed_rescheduled"] += handling == "Rescheduled"
    compliance_rows = []
    for (location, day, checklist, kind), row in compliance.items():
        judged = row["completed"] + row["missed"]
        compliance_rows.append({
            "location_id": location, "result_date": day, "checklist_id": checklist, "schedule_kind": kind,
            "slots": row["slots"], "completed": row["completed"], "missed": row["missed"],
            "missed_approved": row["missed_approved"], "missed_rescheduled": row["missed_rescheduled"],
            "compliance_pct": 100.0 * row["completed"] / judged if kind in COUNTED_KINDS and judged else None,
            "mean_score": statistics.fmean(row["scores"]) if row["scores"] else None,
        })

    backlog = []
    groups = {}
    for a in assignments:
        location = locations[a["location"]["id"]]
        finished = (instant(a.get("resolved")) or instant(a["updated"])) if a["status"] in FINISHED else None
        item = (instant(a["created"]), instant(a.get("due")), finished)
        groups.setdefault((location.id, a.get("priority") or "None", bool(a.get("critical"))), []).append(item)
    for (location_id, priority, critical), items in groups.items():
        location = locations[location_id]
        first_day = min(location.local_date(created) for created, _, _ in items)
        for day in days_between(first_day, location.local_date(as_of)):
            _, day_end = location.day_bounds(day)
            open_items = [i for i in items if i[0] < day_end and (i[2] is None or i[2] >= day_end)]
            backlog.append({
                "location_id": location_id, "local_date": day.isoformat(), "priority": priority,
                "is_critical": critical,
                "created": sum(1 for i in items if location.local_date(i[0]) == day),
                "resolved": sum(1 for i in items if i[2] is not None and location.local_date(i[2]) == day),
                "open_at_end": len(open_items),
                "overdue_at_end": sum(1 for i in open_items if i[1] is not None and i[1] < day_end),
                "median_open_age_days": statistics.median(
                    [(day_end - i[0]).total_seconds() / 86400.0 for i in open_items]) if open_items else None,
            })

    json.dump({
        "mart_location_availability_daily": availability,
        "mart_downtime_category_daily": [
            {"location_id": k[0], "local_date": k[1], "category": k[2], **v} for k, v in categories.items()
        ],
        "mart_inspection_compliance_daily": compliance_rows,
        "mart_opening_readiness_daily": readiness,
        "mart_assignment_backlog_daily": backlog,
    }, sys.stdout)


def result_date(record, locations):
    moment = instant((record.get("schedule") or {}).get("slot") or record.get("started") or record.get("created"))
    location = locations.get(record["location"]["id"])
    return location.local_date(moment) if location else moment.date()


if __name__ == "__main__":
    main()
