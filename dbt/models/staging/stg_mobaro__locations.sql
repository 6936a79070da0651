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
    {{ mobaro_json_text('record_json', 'mobaro_location_time_zone_path') }} as time_zone,
    json_extract(record_json, '{{ var("mobaro_location_weekly_hours_path") }}') as weekly_hours,
    json_extract_string(record_json, '{{ var("mobaro_location_closure_dates_path") }}') as closure_dates,
    created_at,
    updated_at
from current_state
