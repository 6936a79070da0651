-- Every location: named by a Location record, a Result, a Downtime or an
-- Assignment, with its latest known name, time zone and whether it has an
-- opening-hours calendar.
select
    names.account,
    names.location_id,
    names.location_name,
    calendar.time_zone,
    calendar.has_calendar
from {{ ref('int_location_names') }} as names
left join {{ ref('int_location_calendar') }} as calendar
    on calendar.account = names.account
    and calendar.location_id = names.location_id
