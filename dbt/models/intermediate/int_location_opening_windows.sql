-- One row per opening window of a location's local day, in UTC: its
-- weekday's hours from the calendar in force that day (none on a planned
-- closure), or the
-- whole local day for a location without a calendar. Hours that close at
-- or before they open run past midnight.
with hours as (
    select
        account,
        location_id,
        local_date,
        lower(json_extract_string(entry, '$.{{ var("mobaro_opening_weekday_field") }}')) as weekday,
        try_cast(json_extract_string(entry, '$.{{ var("mobaro_opening_opens_field") }}') as time) as opens,
        try_cast(json_extract_string(entry, '$.{{ var("mobaro_opening_closes_field") }}') as time) as closes
    from (
        select account, location_id, local_date, unnest(json_extract(weekly_hours, '$[*]')) as entry
        from {{ ref('int_location_days') }}
        where has_calendar and not is_closure
    ) as entries
),

windows as (
    select
        days.account,
        days.location_id,
        days.local_date,
        timezone(days.time_zone, days.local_date + hours.opens) as opens_at,
        timezone(
            days.time_zone,
            days.local_date + hours.closes + case when hours.closes <= hours.opens then interval 1 day else interval 0 day end
        ) as closes_at
    from {{ ref('int_location_days') }} as days
    join hours
        on hours.account = days.account
        and hours.location_id = days.location_id
        and hours.local_date = days.local_date
        and hours.weekday = lower(dayname(days.local_date))
    where hours.opens is not null and hours.closes is not null
    union all
    select account, location_id, local_date, day_starts_at, day_ends_at
    from {{ ref('int_location_days') }}
    where not has_calendar
)

select
    *,
    date_diff('second', opens_at, closes_at) / 60.0 as opening_minutes
from windows
