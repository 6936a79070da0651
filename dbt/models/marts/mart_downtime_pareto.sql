-- The downtime Pareto: minutes in opening hours by category and location
-- over the whole history, largest first, with each one's share and the
-- running share of the account's downtime.
with totals as (
    select
        account,
        category,
        location_id,
        sum(downtimes) as downtimes,
        sum(downtime_minutes) as downtime_minutes
    from {{ ref('mart_downtime_category_daily') }}
    group by 1, 2, 3
)

select
    account,
    category,
    location_id,
    downtimes,
    round(downtime_minutes, 2) as downtime_minutes,
    row_number() over (partition by account order by downtime_minutes desc, category, location_id) as pareto_rank,
    round(100.0 * downtime_minutes / nullif(sum(downtime_minutes) over (partition by account), 0), 2) as share_pct,
    round(
        100.0 * sum(downtime_minutes) over (
            partition by account order by downtime_minutes desc, category, location_id rows unbounded preceding
        ) / nullif(sum(downtime_minutes) over (partition by account), 0),
        2
    ) as cumulative_share_pct
from totals
