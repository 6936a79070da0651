//! Benchmark figures as Markdown, kept in BENCHMARKS.md between markers.

use std::path::Path;
use std::time::Duration;

fn rss(mib: Option<f64>) -> String {
    mib.map(|m| format!("{m:.0} MiB"))
        .unwrap_or_else(|| "n/a".into())
}

/// Replaces the text between `<!-- {name}:begin -->` and `<!-- {name}:end -->`,
/// appending the section when it is not there yet.
pub fn replace_section(path: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{begin}\n{text}{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{current}\n{section}\n"),
    };
    std::fs::write(path, updated)
}

pub fn enricher(
    concurrency: usize,
    scenarios: &[crate::enricher::Scenario],
    outcomes: &[crate::enricher::Outcome],
) -> String {
    let mut text = format!(
        "Pre-filled raw topic, concurrency {concurrency}, simulated API on the same machine; \
         rates are measured between the first and the last enriched record's broker timestamp.\n\n\
| scenario | events | events/s | ceiling | ratio | API calls | calls/event | API req/s | peak RSS |\n\
|---|---|---|---|---|---|---|---|---|\n"
    );
    for (scenario, outcome) in scenarios.iter().zip(outcomes) {
        let ceiling = match (scenario.rate_limit, scenario.latency_ms) {
            (Some(rate), _) => Some(rate),
            (None, 0) => None,
            (None, ms) if scenario.updates_per_object == 1 => {
                Some(concurrency as f64 * 1000.0 / ms as f64)
            }
            _ => None,
        };
        let measured = if scenario.rate_limit.is_some() {
            outcome.api_per_second
        } else {
            outcome.per_second
        };
        let (ceiling, ratio) = match ceiling {
            Some(c) => (format!("{c:.0}/s"), format!("{:.2}", measured / c)),
            None => ("-".to_string(), "-".to_string()),
        };
        text.push_str(&format!(
            "| {} | {} | {:.0} | {ceiling} | {ratio} | {} | {:.3} | {:.1} | {} |\n",
            scenario.name,
            outcome.events,
            outcome.per_second,
            outcome.api_calls,
            outcome.api_calls as f64 / outcome.events as f64,
            outcome.api_per_second,
            rss(outcome.peak_rss_mib),
        ));
    }
    text.push_str(
        "\nTargets: at 50 ms, ratio ≥ 0.9 of concurrency / latency; under a limit, the API \
         request rate within 5% of it (ratio 0.95–1.05); bursty stream ≤ 0.2 calls/event.\n",
    );
    text
}

pub fn sink(
    records: usize,
    record_bytes: usize,
    ours: (Duration, u64),
    duckdb: (Duration, u64),
    end_to_end: Option<&crate::sink::EndToEnd>,
) -> String {
    let rate = |d: Duration| records as f64 / d.as_secs_f64();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut text = format!(
        "{records} enriched Result records of about {record_bytes} bytes of JSON each (with `values`), one core, best of three.\n\n\
| path | records/s | time | Parquet size |\n|---|---|---|---|\n\
| sink: JSON → Arrow → Parquet (zstd) → object store (local) | {:.0} | {:.2} s | {:.1} MiB |\n\
| DuckDB, 1 thread: COPY (SELECT * FROM read_json_auto) TO parquet (zstd) | {:.0} | {:.2} s | {:.1} MiB |\n\n\
**Ratio sink / DuckDB: {:.2}** (target ≥ 1.0).\n",
        rate(ours.0),
        ours.0.as_secs_f64(),
        mib(ours.1),
        rate(duckdb.0),
        duckdb.0.as_secs_f64(),
        mib(duckdb.1),
        rate(ours.0) / rate(duckdb.0),
    );
    if let Some(e2e) = end_to_end {
        let budget = e2e.budget as f64 / (1024.0 * 1024.0);
        let limit = budget + 100.0;
        let rss = e2e
            .peak_rss_mib
            .map_or("unknown".to_string(), |r| format!("{r:.0} MiB"));
        let within = e2e.peak_rss_mib.is_some_and(|r| r <= limit);
        text.push_str(&format!(
            "\nEnd to end, the sink binary draining the same records from a pre-filled \
topic (3 partitions, tansu) into a local lake, `results` and `events` files, \
with a {budget:.0} MiB memory budget and the default rotation limits, stopped \
(SIGTERM, final flush) once every record was consumed: **{:.0} records/s** \
({:.2} s from start to exit, of which {:.2} s before the first record: start-up \
and joining the group; {} files before the final flush). \
Peak RSS {rss}, {} the budget + 100 MiB ({limit:.0} MiB). \
In the same run a bare consumer (rdkafka, no processing) read the topic at \
{:.0} records/s: **ratio sink / bare consumer {:.2}**, start-up included.\n",
            records as f64 / e2e.elapsed.as_secs_f64(),
            e2e.elapsed.as_secs_f64(),
            e2e.startup.as_secs_f64(),
            e2e.files,
            if within { "within" } else { "**over**" },
            records as f64 / e2e.bare_consumer.as_secs_f64(),
            e2e.bare_consumer.as_secs_f64() / e2e.elapsed.as_secs_f64(),
        ));
    }
    text
}
