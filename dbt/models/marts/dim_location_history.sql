-- One row per version of each Location: valid_from / valid_to (null: the
-- current one); is_deleted for the version its deletion starts.
with history as (
    {{ mobaro_history(ref('stg_mobaro__locations'), 'location_id') }}
)

select
    account,
    location_id,
    valid_from,
    valid_to,
    is_current,
    is_deletion as is_deleted,
    location_name,
    parent_id,
    time_zone,
    weekly_hours,
    closure_dates,
    event_id
from history
