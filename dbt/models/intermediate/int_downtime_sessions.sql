-- Downtimes of a location merged where they overlap (sessionised): one row
-- per stretch of time the location was down, so that two downtimes at once
-- count their common minutes once.
with ordered as (
    select
        account,
        location_id,
        downtime_id,
        started_at,
        ends_at,
        is_open,
        max(ends_at) over (
            partition by account, location_id
            order by started_at, downtime_id
            rows between unbounded preceding and 1 preceding
        ) as previous_end
    from {{ ref('fct_downtime') }}
),

numbered as (
    select
        *,
        sum(case when previous_end is null or started_at > previous_end then 1 else 0 end) over (
            partition by account, location_id
            order by started_at, downtime_id
            rows unbounded preceding
        ) as session_number
    from ordered
)

select
    account,
    location_id,
    session_number,
    min(started_at) as session_starts_at,
    max(ends_at) as session_ends_at,
    bool_or(is_open) as is_open,
    count(*) as downtimes
from numbered
group by 1, 2, 3
