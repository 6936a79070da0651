-- Each User's current state.
with current_state as (
    {{ mobaro_current_state('users') }}
)

select
    account,
    object_id as user_id,
    is_deleted,
    last_event_at,
    name as user_name,
    email,
    username,
    user_groups,
    roles,
    location_ids,
    coalesce(archived, false) as is_archived,
    created_at,
    updated_at,
    record_json
from current_state
