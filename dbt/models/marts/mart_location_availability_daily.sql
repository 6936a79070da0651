-- Per location and local day, Mobaro's availability figures: opening
-- minutes (the calendar's, 24 h without one, none on a planned closure),
-- downtime minutes inside opening hours (overlapping downtimes once),
-- uptime and downtime %, downtimes, MTTR and MTBF. A downtime counts on the
-- day of its first minute in hours, with all its minutes in hours (MTTR).
with days as (
    select * from {{ ref('int_location_days') }}
),

opening as (
    select account, location_id, local_date, sum(opening_minutes) as opening_minutes, min(opens_at) as first_opens_at
    from {{ ref('int_location_opening_windows') }}
    group by 1, 2, 3
),

down as (
    select
        windows.account,
        windows.location_id,
        windows.local_date,
        sum({{ mobaro_overlap_minutes('sessions.session_starts_at', 'sessions.session_ends_at', 'windows.opens_at', 'windows.closes_at') }}) as downtime_minutes
    from {{ ref('int_location_opening_windows') }} as windows
    join {{ ref('int_downtime_sessions') }} as sessions
        on sessions.account = windows.account
        and sessions.location_id = windows.location_id
        and sessions.session_starts_at < windows.closes_at
        and windows.opens_at < sessions.session_ends_at
    group by 1, 2, 3
),

started as (
    select
        account,
        location_id,
        first_in_hours_date as local_date,
        count(*) as downtimes,
        sum(total_in_hours_minutes) as repair_minutes,
        sum(elapsed_minutes) as elapsed_repair_minutes
    from (
        select distinct account, downtime_id, location_id, first_in_hours_date, total_in_hours_minutes, elapsed_minutes
        from {{ ref('int_downtime_in_hours') }}
    ) as downtimes
    group by 1, 2, 3
),

open_downtimes as (
    select days.account, days.location_id, days.local_date, count(*) as open_downtimes
    from days
    join {{ ref('fct_downtime') }} as downtimes
        on downtimes.account = days.account
        and downtimes.location_id = days.location_id
        and downtimes.is_open
        and downtimes.started_at < days.day_ends_at
        and days.day_starts_at < downtimes.ends_at
    group by 1, 2, 3
),

figures as (
    select
        days.account,
        days.location_id,
        days.local_date,
        days.time_zone,
        days.has_calendar,
        days.is_closure,
        days.day_ends_at,
        coalesce(opening.opening_minutes, 0) as opening_minutes,
        opening.first_opens_at,
        coalesce(down.downtime_minutes, 0) as downtime_minutes,
        coalesce(started.downtimes, 0) as downtimes,
        coalesce(started.repair_minutes, 0) as repair_minutes,
        coalesce(started.elapsed_repair_minutes, 0) as elapsed_repair_minutes,
        coalesce(open_downtimes.open_downtimes, 0) as open_downtimes
    from days
    left join opening using (account, location_id, local_date)
    left join down using (account, location_id, local_date)
    left join started using (account, location_id, local_date)
    left join open_downtimes using (account, location_id, local_date)
)

select
    account,
    location_id,
    local_date,
    time_zone,
    has_calendar,
    is_closure,
    first_opens_at,
    round(opening_minutes, 2) as opening_minutes,
    round(downtime_minutes, 2) as downtime_minutes,
    round(opening_minutes - downtime_minutes, 2) as operational_minutes,
    round(100.0 * (opening_minutes - downtime_minutes) / nullif(opening_minutes, 0), 2) as uptime_pct,
    -- Mobaro: downtime / (operational + downtime), i.e. over the opening minutes.
    round(100.0 * downtime_minutes / nullif(opening_minutes, 0), 2) as downtime_pct,
    downtimes,
    round(repair_minutes, 2) as repair_minutes,
    round(repair_minutes / nullif(downtimes, 0), 2) as mttr_minutes,
    -- Mobaro's MTTR widget: from registration until back in operation.
    round(elapsed_repair_minutes, 2) as elapsed_repair_minutes,
    round(elapsed_repair_minutes / nullif(downtimes, 0), 2) as mttr_elapsed_minutes,
    round((opening_minutes - downtime_minutes) / 60.0 / nullif(downtimes, 0), 2) as mtbf_hours,
    open_downtimes,
    open_downtimes > 0 as is_provisional,
    open_downtimes = 0 and {{ mobaro_is_final('day_ends_at', 'status') }} as is_final
from figures
left join {{ ref('int_table_final_through') }} as status
    on status.table_name = 'downtimes'
