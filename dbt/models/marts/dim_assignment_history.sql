-- One row per version of each Assignment: its state, priority, due time
-- and location as they were from valid_from to valid_to (null: current).
with history as (
    {{ mobaro_history('assignments') }}
)

select
    account,
    object_id as assignment_id,
    valid_from,
    valid_to,
    valid_to is null as is_current,
    is_deletion as is_deleted,
    title,
    location_id,
    record_status as assignment_status,
    {{ mobaro_json_text('record_json', 'mobaro_assignment_priority_path') }} as priority,
    coalesce(try_cast({{ mobaro_json_text('record_json', 'mobaro_assignment_critical_path') }} as boolean), false) as is_critical,
    due_at,
    event_id
from history
