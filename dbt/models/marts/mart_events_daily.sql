-- Webhook events per day, resource and kind, with what their fetch found.
select
    account,
    event_date,
    resource,
    event_kind,
    count(*) as events,
    count(*) filter (where fetch_status = 'found') as fetched,
    count(*) filter (where fetch_status = 'not_found') as not_found,
    max(event_at) as last_event_at,
    max(received_at) as last_received_at
from {{ ref('stg_mobaro__events') }}
group by 1, 2, 3, 4
