-- One row per opening window of a location's local day, in UTC: its
-- weekday's hours from the calendar in force that day (none on a planned
-- closure), or the whole local day for a location without a calendar.
-- Hours that close at or before they open run past midnight.
with entries as (
    select account, location_id, local_date, time_zone, unnest(json_extract(weekly_hours, '$[*]')) as entry
    from {{ ref('int_location_days') }}
    where has_calendar and not is_closure
),

hours as (
    select
        account,
        location_id,
        local_date,
        time_zone,
        lower(json_extract_string(entry, '$.{{ var("mobaro_opening_weekday_field") }}')) as weekday,
        try_cast(json_extract_string(entry, '$.{{ var("mobaro_opening_opens_field") }}') as time) as opens,
        try_cast(json_extract_string(entry, '$.{{ var("mobaro_opening_closes_field") }}') as time) as closes
    from entries
),

windows as (
    select
        account,
        location_id,
        local_date,
        timezone(time_zone, local_date + opens) as opens_at,
        timezone(
            time_zone,
            local_date + closes + case when closes <= opens then interval 1 day else interval 0 day end
        ) as closes_at
    from hours
    where weekday = lower(dayname(local_date)) and opens is not null and closes is not null
    union all
    select account, location_id, local_date, day_starts_at, day_ends_at
    from {{ ref('int_location_days') }}
    where not has_calendar
)

select
    *,
    date_diff('second', opens_at, closes_at) / 60.0 as opening_minutes
from windows
