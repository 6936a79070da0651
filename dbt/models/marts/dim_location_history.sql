-- One row per version of each Location: valid_from / valid_to (null: the
-- current one); is_deleted for the version its deletion starts.
with history as (
    {{ mobaro_history('locations') }}
)

select
    account,
    object_id as location_id,
    valid_from,
    valid_to,
    valid_to is null as is_current,
    is_deletion as is_deleted,
    name as location_name,
    parent_id,
    {{ mobaro_json_text('record_json', 'mobaro_location_time_zone_path') }} as time_zone,
    json_extract(record_json, '{{ var("mobaro_location_weekly_hours_path") }}') as weekly_hours,
    event_id
from history
