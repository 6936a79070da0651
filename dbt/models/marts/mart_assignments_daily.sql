-- Open and overdue assignments at the end of each day, from the first
-- assignment's creation to mobaro_as_of. An assignment counts as open from
-- its creation until its last update if it is finished now (the lake keeps
-- each state's record, but the finish time is taken as the last update).
with bounds as (
    select
        account,
        cast(min(created_at) as date) as first_day,
        cast({{ mobaro_as_of() }} as date) as last_day
    from {{ ref('fct_assignment') }}
    group by 1
),

days as (
    select account, cast(day as date) as snapshot_date
    from bounds, generate_series(first_day, last_day, interval 1 day) as series(day)
),

assignments as (
    select account, assignment_id, created_at, due_at, finished_at
    from {{ ref('fct_assignment') }}
)

select
    days.account,
    days.snapshot_date,
    count(assignments.assignment_id) as open_assignments,
    count(assignments.assignment_id) filter (
        where assignments.due_at < cast(days.snapshot_date + interval 1 day as timestamp with time zone)
    ) as overdue_assignments
from days
left join assignments
    on assignments.account = days.account
    and assignments.created_at < cast(days.snapshot_date + interval 1 day as timestamp with time zone)
    and (
        assignments.finished_at is null
        or assignments.finished_at >= cast(days.snapshot_date + interval 1 day as timestamp with time zone)
    )
group by 1, 2
