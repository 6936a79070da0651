-- Each Downtime's current state (fields only when Downtimes are fetched).
with current_state as (
    {{ mobaro_current_state('downtimes') }}
)

select
    account,
    object_id as downtime_id,
    is_deleted,
    last_event_at,
    location_id,
    {{ mobaro_json_text('record_json', 'mobaro_location_name_path') }} as location_name,
    reason,
    {{ mobaro_json_text('record_json', 'mobaro_downtime_category_path') }} as category,
    {{ mobaro_json_text('record_json', 'mobaro_downtime_status_path') }} as downtime_status,
    started_at,
    ended_at,
    created_at,
    updated_at
from current_state
