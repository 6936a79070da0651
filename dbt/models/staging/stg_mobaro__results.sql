-- Each Result event once: the fetched record typed, its guessed fields read at the paths of dbt_project.yml.
-- One row per source row (copies of one event_id once).
with source as (
    {{ mobaro_one_row_per_event(source('mobaro', 'results')) }}
)

select
    account,
    event_id,
    object_id as result_id,
    event as event_kind,
    event_timestamp as event_at,
    received_at,
    fetched_at,
    status as fetch_status,
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
    try_cast({{ mobaro_json_text('record_json', 'mobaro_result_max_score_path') }} as double) as max_score,
    {{ mobaro_json_text('record_json', 'mobaro_result_schedule_kind_path') }} as schedule_kind,
    try_cast({{ mobaro_json_text('record_json', 'mobaro_result_slot_path') }} as timestamp with time zone) as slot_at,
    {{ mobaro_json_text('record_json', 'mobaro_result_missed_handling_path') }} as missed_handling,
    coalesce(try_cast({{ mobaro_json_text('record_json', 'mobaro_checklist_critical_path') }} as boolean), false) as is_critical_for_operation,
    started_at,
    answered_at,
    submitted_at,
    created_at,
    updated_at,
    "values" as answer_values,
    record_json
from source
