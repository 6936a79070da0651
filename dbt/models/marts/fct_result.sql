-- One row per Result that is not deleted: its outcome, score and timing.
select
    account,
    result_id,
    checklist_id,
    location_id,
    asset_id,
    user_id,
    result_status,
    {{ mobaro_in('result_status', 'mobaro_result_passed_statuses') }} as is_passed,
    {{ mobaro_in('result_status', 'mobaro_result_failed_statuses') }} as is_failed,
    {{ mobaro_in('result_status', 'mobaro_result_missed_statuses') }} as is_missed,
    {{ mobaro_in('result_status', 'mobaro_result_invalidated_statuses') }} as is_invalidated,
    score,
    max_score,
    round(score * 100, 2) as score_percentage,
    started_at,
    answered_at,
    submitted_at,
    {{ dbt.datediff('started_at', 'coalesce(submitted_at, answered_at)', 'second') }} / 60.0 as duration_minutes,
    cast(coalesce(started_at, created_at, last_event_at) as date) as result_date,
    coalesce(len(answer_values), 0) as answered_questions,
    updated_at,
    last_event_at
from {{ ref('stg_mobaro__results') }}
where not is_deleted
