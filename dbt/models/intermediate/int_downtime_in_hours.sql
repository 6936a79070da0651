-- Each downtime's minutes inside each opening window it touches (outside
-- opening hours a downtime is ignored, as in Mobaro), with the local day
-- of its first minute in hours and its total minutes in hours.
with in_windows as (
    select
        downtimes.account,
        downtimes.downtime_id,
        downtimes.location_id,
        downtimes.category,
        downtimes.is_open,
        downtimes.duration_minutes as elapsed_minutes,
        windows.local_date,
        windows.opens_at,
        {{ mobaro_overlap_minutes('downtimes.started_at', 'downtimes.ends_at', 'windows.opens_at', 'windows.closes_at') }} as in_hours_minutes
    from {{ ref('fct_downtime') }} as downtimes
    join {{ ref('int_location_opening_windows') }} as windows
        on windows.account = downtimes.account
        and windows.location_id = downtimes.location_id
        and windows.opens_at < downtimes.ends_at
        and downtimes.started_at < windows.closes_at
)

select
    *,
    min(local_date) over (partition by account, downtime_id) as first_in_hours_date,
    sum(in_hours_minutes) over (partition by account, downtime_id) as total_in_hours_minutes
from in_windows
