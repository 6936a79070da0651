-- Each Assignment's current state (fields only when Assignments are fetched).
with current_state as (
    {{ mobaro_current_state('assignments') }}
)

select
    account,
    object_id as assignment_id,
    is_deleted,
    last_event_at,
    title,
    location_id,
    {{ mobaro_json_text('record_json', 'mobaro_location_name_path') }} as location_name,
    record_status as assignment_status,
    {{ mobaro_json_text('record_json', 'mobaro_assignment_priority_path') }} as priority,
    coalesce(try_cast({{ mobaro_json_text('record_json', 'mobaro_assignment_critical_path') }} as boolean), false) as is_critical,
    due_at,
    try_cast({{ mobaro_json_text('record_json', 'mobaro_assignment_resolved_path') }} as timestamp with time zone) as resolved_at,
    created_at,
    updated_at
from current_state
