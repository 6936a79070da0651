-- One row per version of each User: valid_from / valid_to (null: the
-- current one). Names people: rebuilt from the lake on every run, so an
-- erasure in the lake reaches it at the next build.
with history as (
    {{ mobaro_history('users') }}
)

select
    account,
    object_id as user_id,
    valid_from,
    valid_to,
    valid_to is null as is_current,
    is_deletion as is_deleted,
    name as user_name,
    email,
    user_groups,
    roles,
    location_ids,
    coalesce(archived, false) as is_archived,
    event_id
from history
