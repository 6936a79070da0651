-- One row per Assignment that is not deleted: its state, priority, due
-- time and when it was resolved (the record's resolution time, else its
-- last update once finished).
select
    account,
    assignment_id,
    title,
    location_id,
    assignment_status,
    priority,
    is_critical,
    {{ mobaro_in('assignment_status', 'mobaro_assignment_finished_statuses') }} as is_finished,
    due_at,
    not {{ mobaro_in('assignment_status', 'mobaro_assignment_finished_statuses') }}
        and due_at < {{ mobaro_as_of() }} as is_overdue,
    created_at,
    updated_at,
    case
        when {{ mobaro_in('assignment_status', 'mobaro_assignment_finished_statuses') }}
        then coalesce(resolved_at, updated_at)
    end as finished_at,
    case
        when {{ mobaro_in('assignment_status', 'mobaro_assignment_finished_statuses') }}
        then {{ dbt.datediff('created_at', 'coalesce(resolved_at, updated_at)', 'second') }} / 3600.0
    end as hours_to_finish
from {{ ref('int_mobaro__assignments_current') }}
where not is_deleted
