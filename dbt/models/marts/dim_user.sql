-- Every user with a User record, and every user named by a Result.
with from_results as (
    select
        account,
        user_id,
        user_name,
        row_number() over (partition by account, user_id order by last_event_at desc) as recency
    from {{ ref('int_mobaro__results_current') }}
    where user_id is not null
)

select
    coalesce(users.account, from_results.account) as account,
    coalesce(users.user_id, from_results.user_id) as user_id,
    coalesce(users.user_name, from_results.user_name) as user_name,
    users.email,
    users.username,
    coalesce(users.is_archived, false) as is_archived,
    coalesce(users.is_deleted, false) as is_deleted,
    users.user_id is not null as has_record
from {{ ref('int_mobaro__users_current') }} as users
full outer join (select * from from_results where recency = 1) as from_results
    on from_results.account = users.account
    and from_results.user_id = users.user_id
