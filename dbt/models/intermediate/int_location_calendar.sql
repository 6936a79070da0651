-- One row per location: its time zone and whether it has an opening-hours
-- calendar now, from its current Location record (the default zone, around
-- the clock, without one). The hours of each day: int_location_days.
select
    dim.account,
    dim.location_id,
    coalesce(locations.time_zone, '{{ var("mobaro_default_time_zone") }}') as time_zone,
    locations.weekly_hours is not null as has_calendar
from {{ ref('int_location_names') }} as dim
left join {{ ref('int_mobaro__locations_current') }} as locations
    on locations.account = dim.account
    and locations.location_id = dim.location_id
