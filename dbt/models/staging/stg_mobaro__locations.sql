-- Each Location event once: name, parent, time zone and opening-hours calendar.
-- One row per source row (copies of one event_id once).
with source as (
    {{ mobaro_one_row_per_event(source('mobaro', 'locations')) }}
)

select
    account,
    event_id,
    object_id as location_id,
    event as event_kind,
    event_timestamp as event_at,
    received_at,
    fetched_at,
    status as fetch_status,
    name as location_name,
    parent_id,
    {{ mobaro_json_text('record_json', 'mobaro_location_time_zone_path') }} as time_zone,
    json_extract(record_json, '{{ var("mobaro_location_weekly_hours_path") }}') as weekly_hours,
    json_extract_string(record_json, '{{ var("mobaro_location_closure_dates_path") }}') as closure_dates,
    created_at,
    updated_at,
    record_json
from source
