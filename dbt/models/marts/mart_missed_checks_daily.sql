-- Missed checks per day and location.
select
    account,
    result_date,
    location_id,
    count(*) as results,
    count(*) filter (where is_missed) as missed,
    round(count(*) filter (where is_missed) * 1.0 / count(*), 4) as missed_share
from {{ ref('fct_result') }}
group by 1, 2, 3
