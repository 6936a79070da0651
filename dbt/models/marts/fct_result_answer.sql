-- One row per answered question of a Result that is not deleted.
with answers as (
    select
        account,
        result_id,
        unnest(answer_values) as answer
    from {{ ref('int_mobaro__results_current') }}
    where not is_deleted
)

select
    account,
    result_id,
    answer.question as question_id,
    answer.answers as answers,
    array_to_string(answer.answers, ', ') as answer_text,
    coalesce(list_contains(answer.answers, 'N/A'), false) as is_not_applicable,
    answer.answered_at as answered_at
from answers
