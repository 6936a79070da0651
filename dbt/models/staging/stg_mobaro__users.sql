-- Each User event once, the fetched record typed.
-- One row per source row (copies of one event_id once).
with source as (
    {{ mobaro_one_row_per_event(source('mobaro', 'users')) }}
)

select
    account,
    event_id,
    object_id as user_id,
    event as event_kind,
    event_timestamp as event_at,
    received_at,
    fetched_at,
    status as fetch_status,
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
from source
