-- Every webhook event once, typed and renamed.
with events as (
    {{ mobaro_one_row_per_event(source('mobaro', 'events')) }}
)

select
    event_id,
    account,
    resource,
    event as event_kind,
    object_id,
    event_timestamp as event_at,
    received_at,
    fetched_at,
    status as fetch_status,
    event = 'Deleted' as is_deletion,
    cast(event_timestamp as date) as event_date
from events
