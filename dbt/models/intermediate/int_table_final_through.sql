-- One row per lake table: the last UTC day its compaction has closed and
-- the grace it closes days after, as the table publishes them
-- (`_lake_status/{table}.json`); a day is final once both say so.
select
    "table" as table_name,
    max(try_cast(final_through as date)) as final_through,
    max(try_cast(compaction_grace_hours as double)) as compaction_grace_hours
from {{ source('mobaro', 'lake_status') }}
group by 1
