-- Every checklist named by a Result, with its latest name (checklists are
-- not a webhook resource).
select
    account,
    checklist_id,
    checklist_name
from (
    select
        account,
        checklist_id,
        checklist_name,
        row_number() over (partition by account, checklist_id order by last_event_at desc) as recency
    from {{ ref('int_mobaro__results_current') }}
    where checklist_id is not null
) as named
where recency = 1
