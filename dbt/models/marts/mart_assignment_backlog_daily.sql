-- Per location, local day, priority and criticality: Assignments created
-- and resolved that day, open and overdue at the day's end, and the median
-- age (days) of those open, from the first creation to mobaro_as_of.
with assignments as (
    select
        assignments.*,
        coalesce(assignments.priority, 'None') as priority_name,
        coalesce(calendar.time_zone, '{{ var("mobaro_default_time_zone") }}') as time_zone
    from {{ ref('fct_assignment') }} as assignments
    left join {{ ref('int_location_calendar') }} as calendar
        on calendar.account = assignments.account
        and calendar.location_id = assignments.location_id
),

groups as (
    select
        account,
        location_id,
        time_zone,
        priority_name,
        is_critical,
        min(cast(timezone(time_zone, created_at) as date)) as first_date
    from assignments
    group by 1, 2, 3, 4, 5
),

days as (
    select
        groups.*,
        cast(series.day as date) as local_date,
        timezone(groups.time_zone, cast(cast(series.day as date) + 1 as timestamp)) as day_ends_at
    from groups,
        generate_series(
            cast(groups.first_date as timestamp),
            cast(cast(timezone(groups.time_zone, {{ mobaro_as_of() }}) as date) as timestamp),
            interval 1 day
        ) as series(day)
),

-- Each day with the assignments created before its end.
joined as (
    select
        days.*,
        cast(timezone(days.time_zone, a.created_at) as date) = days.local_date as is_created,
        cast(timezone(days.time_zone, a.finished_at) as date) = days.local_date as is_resolved,
        a.assignment_id is not null
            and (a.finished_at is null or a.finished_at >= days.day_ends_at) as is_open_at_end,
        a.due_at < days.day_ends_at as is_due,
        date_diff('second', a.created_at, days.day_ends_at) / 86400.0 as age_days
    from days
    left join assignments as a
        on a.account = days.account
        and a.location_id is not distinct from days.location_id
        and a.priority_name = days.priority_name
        and a.is_critical = days.is_critical
        and a.created_at < days.day_ends_at
)

select
    joined.account,
    joined.location_id,
    joined.local_date,
    joined.priority_name as priority,
    joined.is_critical,
    count(*) filter (where is_created) as created,
    count(*) filter (where is_resolved) as resolved,
    count(*) filter (where is_open_at_end) as open_at_end,
    count(*) filter (where is_open_at_end and is_due) as overdue_at_end,
    round(median(age_days) filter (where is_open_at_end), 2) as median_open_age_days,
    {{ mobaro_is_final('joined.day_ends_at', 'status') }} as is_final
from joined
left join {{ ref('int_table_final_through') }} as status
    on status.table_name = 'assignments'
group by joined.account, joined.location_id, joined.local_date, joined.priority_name, joined.is_critical,
    joined.day_ends_at, status.final_through, status.compaction_grace_hours
