-- Downtime minutes split at UTC day boundaries: one row per downtime and day.
with spans as (
    select
        account,
        downtime_id,
        location_id,
        is_blocking,
        started_at,
        coalesce(ended_at, {{ mobaro_as_of() }}) as ended_at
    from {{ ref('fct_downtime') }}
),

days as (
    select
        spans.*,
        cast(day as date) as downtime_date
    from spans,
        generate_series(
            date_trunc('day', started_at),
            date_trunc('day', ended_at),
            interval 1 day
        ) as series(day)
    where ended_at > started_at
)

select
    account,
    downtime_id,
    location_id,
    downtime_date,
    is_blocking,
    date_diff(
        'second',
        greatest(started_at, cast(downtime_date as timestamp with time zone)),
        least(ended_at, cast(downtime_date + interval 1 day as timestamp with time zone))
    ) / 60.0 as downtime_minutes
from days
