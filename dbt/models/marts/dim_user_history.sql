-- One row per version of each User: valid_from / valid_to (null: the
-- current one). Names people: rebuilt from the lake on every run, so an
-- erasure in the lake reaches it at the next build.
with history as (
    {{ mobaro_history(ref('stg_mobaro__users'), 'user_id') }}
)

select
    account,
    user_id,
    valid_from,
    valid_to,
    is_current,
    is_deletion as is_deleted,
    user_name,
    email,
    user_groups,
    roles,
    location_ids,
    is_archived,
    event_id
from history
