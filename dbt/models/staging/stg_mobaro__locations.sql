-- Each Location's current state (name and parent only when Locations are fetched).
with current_state as (
    {{ mobaro_current_state('locations') }}
)

select
    account,
    object_id as location_id,
    is_deleted,
    last_event_at,
    name as location_name,
    parent_id,
    created_at,
    updated_at
from current_state
