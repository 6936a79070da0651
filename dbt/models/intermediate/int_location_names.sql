-- Every location named by a Location record, a Result, a Downtime or an
-- Assignment, with its latest known name.
with named as (
    select account, location_id, location_name, last_event_at as seen_at
    from {{ ref('int_mobaro__locations_current') }}
    where location_name is not null
    union all
    select account, location_id, location_name, last_event_at
    from {{ ref('int_mobaro__results_current') }}
    where location_id is not null
    union all
    select account, location_id, location_name, last_event_at
    from {{ ref('int_mobaro__downtimes_current') }}
    where location_id is not null
    union all
    select account, location_id, location_name, last_event_at
    from {{ ref('int_mobaro__assignments_current') }}
    where location_id is not null
),

ids as (
    select account, location_id from named
    union
    select account, location_id from {{ ref('int_mobaro__locations_current') }}
)

select
    ids.account,
    ids.location_id,
    (
        select named.location_name
        from named
        where named.account = ids.account
            and named.location_id = ids.location_id
            and named.location_name is not null
        order by named.seen_at desc
        limit 1
    ) as location_name
from ids
where ids.location_id is not null
