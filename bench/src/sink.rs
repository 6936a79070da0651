//! `bench sink`: the sink's JSON → Arrow → Parquet (zstd) → object store path
//! on realistic enriched Result records, on one core, against DuckDB with one
//! thread doing `COPY (SELECT * FROM read_json_auto(...)) TO ... (FORMAT
//! parquet, COMPRESSION zstd)` on the same records. Best of three runs each.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use schemas::EnrichedView;

use crate::report;

const RUNS: usize = 3;

/// Enriched Result records as the enricher produces them, one JSON per line.
fn records_file(dir: &Path, count: usize) -> anyhow::Result<(std::path::PathBuf, usize)> {
    let path = dir.join("enriched.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut bytes = 0;
    for i in 0..count {
        let id = format!("results/{i}-A");
        let record = mobaro_sim::records::record("results", &id).context("results exist")?;
        let line = serde_json::json!({
            "event_id": format!("{i:032x}"), "resource": "Results", "event": "Updated",
            "object_id": id, "event_timestamp": "2025-03-01T08:00:00Z",
            "received_at": "2025-03-01T08:00:00.120Z", "fetched_at": "2025-03-01T08:00:00.250Z",
            "status": "found", "record": record,
        })
        .to_string();
        bytes += line.len() + 1;
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    Ok((path, bytes / count))
}

/// The sink's path, on the current (single) thread: each line is decoded into
/// a batch as a consumed message would be (the Result goes to `results` and its
/// envelope to `events`), then the batch's files are closed and written.
async fn ours(input: &Path, output: &Path) -> anyhow::Result<(Duration, u64)> {
    let lake = sink::Lake::open(output.to_str().context("utf-8 path")?)?;
    let started = Instant::now();
    let text = std::fs::read(input)?;
    let mut batch = sink::Batch::new(0, 0, sink::Compression::Zstd, 8 << 20);
    for (offset, line) in text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let record = EnrichedView::from_json(line)?;
        batch.push(offset as i64, Some(&record), line.len())?;
    }
    let mut size = 0;
    for file in batch.finish("bench")? {
        size += file.bytes.len() as u64;
        lake.create(&lake.path(&file.name), file.bytes).await?;
    }
    Ok((started.elapsed(), size))
}

fn duckdb(python: &Path, input: &Path, output: &Path) -> anyhow::Result<(Duration, u64)> {
    const SCRIPT: &str = r#"
import duckdb, sys, time, os
con = duckdb.connect()
con.sql("SET threads = 1")
started = time.perf_counter()
con.sql(f"COPY (SELECT * FROM read_json_auto('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
print(time.perf_counter() - started, os.path.getsize(sys.argv[2]))
"#;
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(input)
        .arg(output)
        .output()?;
    ensure!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next().context("time")?.parse()?;
    let size: u64 = parts.next().context("size")?.parse()?;
    Ok((Duration::from_secs_f64(seconds), size))
}

pub async fn run(count: usize, python: &Path, report_path: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (input, record_bytes) = records_file(dir.path(), count)?;
    let mut ours_best = (Duration::MAX, 0);
    let mut duck_best = (Duration::MAX, 0);
    for run in 0..RUNS {
        let lake = dir.path().join(format!("lake-{run}"));
        let result = ours(&input, &lake).await?;
        ours_best = ours_best.min(result);
        let result = duckdb(
            python,
            &input,
            &dir.path().join(format!("duckdb-{run}.parquet")),
        )?;
        duck_best = duck_best.min(result);
    }
    let text = report::sink(count, record_bytes, ours_best, duck_best);
    println!("{text}");
    report::replace_section(report_path, "sink", &text)?;
    Ok(())
}
