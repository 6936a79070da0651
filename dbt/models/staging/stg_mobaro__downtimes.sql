-- Each Downtime event once (fields only when Downtimes are fetched).
-- One row per source row (copies of one event_id once).
with source as (
    {{ mobaro_one_row_per_event(source('mobaro', 'downtimes')) }}
)

select
    account,
    event_id,
    object_id as downtime_id,
    event as event_kind,
    event_timestamp as event_at,
    received_at,
    fetched_at,
    status as fetch_status,
    location_id,
    {{ mobaro_json_text('record_json', 'mobaro_location_name_path') }} as location_name,
    reason,
    {{ mobaro_json_text('record_json', 'mobaro_downtime_category_path') }} as category,
    {{ mobaro_json_text('record_json', 'mobaro_downtime_status_path') }} as downtime_status,
    started_at,
    ended_at,
    created_at,
    updated_at,
    record_json
from source
