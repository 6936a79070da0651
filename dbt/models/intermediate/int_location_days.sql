-- One row per location and local day, from the day before the account's
-- first downtime, result or assignment to the local day of mobaro_as_of:
-- where the local day starts and ends (23 or 25 hours across a DST change)
-- whether it is a planned closure, and the opening hours in force.
with firsts as (
    select account, min(started_at) as first_at from {{ ref('int_mobaro__downtimes_current') }} where not is_deleted group by 1
    union all
    select account, min(coalesce(slot_at, started_at, created_at)) from {{ ref('int_mobaro__results_current') }} where not is_deleted group by 1
    union all
    select account, min(created_at) from {{ ref('int_mobaro__assignments_current') }} where not is_deleted group by 1
),

bounds as (
    select account, min(first_at) as first_at
    from firsts
    where first_at is not null
    group by 1
),

days as (
    select
        calendar.account,
        calendar.location_id,
        calendar.time_zone,
        cast(series.day as date) as local_date,
        timezone(calendar.time_zone, series.day) as day_starts_at,
        timezone(calendar.time_zone, series.day + interval 1 day) as day_ends_at
    from {{ ref('int_location_calendar') }} as calendar
    join bounds on bounds.account = calendar.account,
        generate_series(
            cast(cast(timezone(calendar.time_zone, bounds.first_at) as date) - 1 as timestamp),
            cast(cast(timezone(calendar.time_zone, {{ mobaro_as_of() }}) as date) as timestamp),
            interval 1 day
        ) as series(day)
)

-- The calendar version in force when the day began.
select
    days.account,
    days.location_id,
    days.local_date,
    days.time_zone,
    coalesce(versions.has_calendar, false) as has_calendar,
    coalesce(list_contains(versions.closure_dates, cast(days.local_date as varchar)), false) as is_closure,
    versions.weekly_hours,
    days.day_starts_at,
    days.day_ends_at
from days
left join {{ ref('int_location_calendar_versions') }} as versions
    on versions.account = days.account
    and versions.location_id = days.location_id
    and (versions.valid_from is null or versions.valid_from <= days.day_starts_at)
    and (versions.valid_to is null or days.day_starts_at < versions.valid_to)
