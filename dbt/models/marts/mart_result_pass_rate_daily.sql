-- Results per day, location and checklist, with the pass rate of those
-- judged (passed or failed; missed and invalidated ones apart). Sum the
-- counts before dividing to roll up.
select
    account,
    result_date,
    location_id,
    checklist_id,
    count(*) as results,
    count(*) filter (where is_passed) as passed,
    count(*) filter (where is_failed) as failed,
    count(*) filter (where is_missed) as missed,
    count(*) filter (where is_invalidated) as invalidated,
    round(
        count(*) filter (where is_passed) * 1.0
        / nullif(count(*) filter (where is_passed or is_failed), 0),
        4
    ) as pass_rate,
    round(avg(score) filter (where not is_missed and not is_invalidated), 4) as average_score
from {{ ref('fct_result') }}
group by 1, 2, 3, 4
