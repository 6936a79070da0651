-- One row per location and local day, from the day before the account's
-- first downtime, result or assignment to the local day of mobaro_as_of:
-- where the local day starts and ends (23 or 25 hours across a DST change)
-- and whether it is a planned closure.
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
        calendar.*,
        cast(series.day as date) as local_date
    from {{ ref('int_location_calendar') }} as calendar
    join bounds on bounds.account = calendar.account,
        generate_series(
            cast(cast(timezone(calendar.time_zone, bounds.first_at) as date) - 1 as timestamp),
            cast(cast(timezone(calendar.time_zone, {{ mobaro_as_of() }}) as date) as timestamp),
            interval 1 day
        ) as series(day)
)

select
    account,
    location_id,
    local_date,
    time_zone,
    has_calendar,
    list_contains(closure_dates, cast(local_date as varchar)) as is_closure,
    timezone(time_zone, cast(local_date as timestamp)) as day_starts_at,
    timezone(time_zone, cast(local_date + 1 as timestamp)) as day_ends_at
from days
