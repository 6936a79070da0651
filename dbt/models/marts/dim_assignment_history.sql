-- One row per version of each Assignment: its state, priority, due time
-- and location as they were from valid_from to valid_to (null: current).
with history as (
    {{ mobaro_history(ref('stg_mobaro__assignments'), 'assignment_id') }}
)

select
    account,
    assignment_id,
    valid_from,
    valid_to,
    is_current,
    is_deletion as is_deleted,
    title,
    location_id,
    assignment_status,
    priority,
    is_critical,
    due_at,
    resolved_at,
    event_id
from history
