-- Each Result's current state: its latest record, and whether it is deleted.
with current_state as (
    {{ mobaro_current_state('results') }}
)

select
    account,
    object_id as result_id,
    is_deleted,
    last_event_at,
    record_fetched_at,
    checklist_id,
    checklist_name,
    location_id,
    location_name,
    asset_id,
    asset_name,
    user_id,
    user_name,
    record_status as result_status,
    score,
    {{ mobaro_json_text('record_json', 'mobaro_result_schedule_kind_path') }} as schedule_kind,
    try_cast({{ mobaro_json_text('record_json', 'mobaro_result_slot_path') }} as timestamp with time zone) as slot_at,
    {{ mobaro_json_text('record_json', 'mobaro_result_missed_handling_path') }} as missed_handling,
    coalesce(try_cast({{ mobaro_json_text('record_json', 'mobaro_checklist_critical_path') }} as boolean), false) as is_critical_for_operation,
    try_cast({{ mobaro_json_text('record_json', 'mobaro_result_max_score_path') }} as double) as max_score,
    started_at,
    answered_at,
    submitted_at,
    created_at,
    updated_at,
    "values" as answer_values,
    record_json
from current_state
