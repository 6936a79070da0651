-- Each Assignment event once (fields only when Assignments are fetched).
-- One row per source row (copies of one event_id once).
with source as (
    {{ mobaro_one_row_per_event(source('mobaro', 'assignments')) }}
)

select
    account,
    event_id,
    object_id as assignment_id,
    event as event_kind,
    event_timestamp as event_at,
    received_at,
    fetched_at,
    status as fetch_status,
    title,
    location_id,
    {{ mobaro_json_text('record_json', 'mobaro_location_name_path') }} as location_name,
    record_status as assignment_status,
    {{ mobaro_json_text('record_json', 'mobaro_assignment_priority_path') }} as priority,
    coalesce(try_cast({{ mobaro_json_text('record_json', 'mobaro_assignment_critical_path') }} as boolean), false) as is_critical,
    due_at,
    try_cast({{ mobaro_json_text('record_json', 'mobaro_assignment_resolved_path') }} as timestamp with time zone) as resolved_at,
    created_at,
    updated_at,
    record_json
from source
