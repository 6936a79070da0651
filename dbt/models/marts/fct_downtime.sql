-- One row per Downtime that is not deleted; an open one lasts until
-- mobaro_as_of (ends_at), its duration provisional until it is closed.
select
    account,
    downtime_id,
    location_id,
    coalesce(category, 'Uncategorised') as category,
    reason,
    downtime_status,
    {{ mobaro_in('downtime_status', 'mobaro_downtime_blocking_statuses') }} as is_blocking,
    ended_at is null and not {{ mobaro_in('downtime_status', 'mobaro_downtime_closed_statuses') }} as is_open,
    started_at,
    ended_at,
    coalesce(ended_at, greatest(started_at, {{ mobaro_as_of() }})) as ends_at,
    {{ dbt.datediff('started_at', 'coalesce(ended_at, greatest(started_at, ' ~ mobaro_as_of() ~ '))', 'second') }} / 60.0 as duration_minutes
from {{ ref('int_mobaro__downtimes_current') }}
where not is_deleted and started_at is not null
