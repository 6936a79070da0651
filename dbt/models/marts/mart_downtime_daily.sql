-- Downtime minutes per day and location, split at day boundaries.
select
    account,
    downtime_date,
    location_id,
    count(distinct downtime_id) as downtimes,
    round(sum(downtime_minutes), 2) as downtime_minutes,
    round(coalesce(sum(downtime_minutes) filter (where is_blocking), 0), 2) as blocking_minutes
from {{ ref('fct_downtime_day') }}
group by 1, 2, 3
