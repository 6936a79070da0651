-- Per location and local day with opening hours and checks critical for
-- operation: whether every such check passed before the location first
-- opened that day ("ready before opening").
with opening as (
    select account, location_id, local_date, min(opens_at) as first_opens_at
    from {{ ref('int_location_opening_windows') }} as windows
    where exists (
        select 1 from {{ ref('int_location_days') }} as days
        where days.account = windows.account and days.location_id = windows.location_id
            and days.local_date = windows.local_date and days.has_calendar
    )
    group by 1, 2, 3
)

select
    opening.account,
    opening.location_id,
    opening.local_date,
    opening.first_opens_at,
    count(*) as critical_checks,
    count(*) filter (where results.is_passed and results.submitted_at <= opening.first_opens_at) as passed_before_opening,
    count(*) = count(*) filter (where results.is_passed and results.submitted_at <= opening.first_opens_at)
        as is_ready_before_opening
from opening
join {{ ref('fct_result') }} as results
    on results.account = opening.account
    and results.location_id = opening.location_id
    and results.result_date = opening.local_date
    and results.is_critical_for_operation
    and not results.is_invalidated
group by 1, 2, 3, 4
