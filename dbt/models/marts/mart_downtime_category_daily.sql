-- Per location, local day and downtime category: the downtimes that began
-- (in hours) that day and each downtime's own minutes in hours that day
-- (two overlapping downtimes of different categories count in both).
select
    account,
    location_id,
    local_date,
    category,
    count(distinct downtime_id) filter (where first_in_hours_date = local_date) as downtimes,
    round(sum(in_hours_minutes), 2) as downtime_minutes,
    bool_or(is_open) as is_provisional
from {{ ref('int_downtime_in_hours') }}
group by 1, 2, 3, 4
