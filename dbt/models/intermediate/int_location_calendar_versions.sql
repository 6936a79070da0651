-- Each location's opening-hours calendar as it was over time: one row per
-- version of its Location record (a deletion keeps the last calendar),
-- valid from valid_from (null: since ever, for the first version) until
-- valid_to (null: still). Mobaro judges downtime against the hours of the
-- day it happened, and parks change their hours with the seasons.
with versions as (
    {{ mobaro_history(ref('stg_mobaro__locations'), 'location_id') }}
),

calendars as (
    select
        account,
        location_id,
        valid_from,
        lead(valid_from) over (partition by account, location_id order by valid_from, event_id) as valid_to,
        row_number() over (partition by account, location_id order by valid_from, event_id) as version,
        weekly_hours,
        closure_dates
    from versions
    where not is_deletion
)

select
    dim.account,
    dim.location_id,
    case when calendars.version > 1 then calendars.valid_from end as valid_from,
    calendars.valid_to,
    calendars.weekly_hours is not null as has_calendar,
    calendars.weekly_hours,
    coalesce(calendars.closure_dates, []) as closure_dates
from {{ ref('int_location_calendar') }} as dim
left join calendars
    on calendars.account = dim.account
    and calendars.location_id = dim.location_id
