//! `bench compaction`: `sink compact` on one closed day of many small files
//! with duplicates, against DuckDB with one thread doing the same
//! deduplicating rewrite of the same files in the same run (one row per
//! `event_id`, the same ranking, zstd Parquet); then many small days, the
//! cost of a (table, day) of a few rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{Datelike, Duration as Span, NaiveDate, SecondsFormat};
use lake::{Compression, DataFile, FileSet, Lake, LakeFormat, Naming, Origin, Tables, Upload};
use schemas::EnrichedView;

use end_to_end::{binary, log_dir, Process};

use crate::report;

/// What `bench compaction` is asked to do.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Rows of the closed day in each of `results` and `events`, duplicates
    /// included.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Files the day's rows are spread over, per table.
    #[arg(long, default_value_t = 1_000)]
    files: usize,
    /// One event in this many is delivered twice, the copy in a later file.
    #[arg(long, default_value_t = 20)]
    duplicate_every: usize,
    /// Small days (a file of a few rows each, in two tables) for the
    /// per-(table, day) cost.
    #[arg(long, default_value_t = 365)]
    small_days: usize,
    /// Python with the duckdb package.
    #[arg(long, env = "LAKE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Report file whose `compaction` section is replaced.
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
    /// Only write the big day's lake into this folder and stop, for
    /// profiling `sink compact` on it (`LAKE_URL=<folder> sink compact`).
    #[arg(long)]
    write_only: Option<PathBuf>,
}

/// The day every row of the big day's events falls on.
fn big_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 3, 1).expect("a date")
}

/// One run's time, peak memory and output.
struct Measured {
    elapsed: Duration,
    peak_rss_mib: Option<f64>,
    rows_out: u64,
    bytes_out: u64,
}

pub(crate) async fn run(options: &Options) -> anyhow::Result<()> {
    if let Some(folder) = &options.write_only {
        let distinct = write_big_day(folder, options).await?;
        println!(
            "{} rows per table ({distinct} distinct events) in {}",
            options.rows,
            folder.display()
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let lake_dir = dir.path().join("lake");
    println!(
        "writing {} rows per table in {} files",
        options.rows, options.files
    );
    let distinct = write_big_day(&lake_dir, options).await?;
    let inputs = day_files(&lake_dir)?;
    let bytes_in: u64 = inputs
        .iter()
        .flat_map(|(_, files)| files)
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!("DuckDB, one thread");
    let duckdb = duckdb(&options.python, &inputs, dir.path())?;
    println!("sink compact");
    let ours = sink_compact(&lake_dir, &inputs)?;
    ensure!(
        ours.rows_out == 2 * distinct as u64,
        "sink compact kept {} rows of {} distinct events in two tables",
        ours.rows_out,
        distinct
    );
    ensure!(
        duckdb.rows_out == ours.rows_out,
        "DuckDB kept {} rows, the sink {}",
        duckdb.rows_out,
        ours.rows_out
    );
    let small_dir = dir.path().join("small");
    write_small_days(&small_dir, options.small_days).await?;
    let small_before = day_files(&small_dir)?;
    let started = Instant::now();
    end_to_end::run_binary(
        "sink",
        &["compact"],
        &[("LAKE_URL", &small_dir.display().to_string())],
    )?;
    let small = started.elapsed();
    for ((table, old), (_, now)) in small_before.iter().zip(day_files(&small_dir)?) {
        let compacted = now.iter().filter(|f| !old.contains(f)).count();
        ensure!(
            compacted == options.small_days,
            "{compacted} compacted files in {table} for {} small days",
            options.small_days
        );
    }
    let text = render(options, distinct, bytes_in, &ours, &duckdb, small);
    println!("{text}");
    report::replace_section(&options.report, "compaction", &text)?;
    Ok(())
}

/// The enriched record of event `i`, fetched at `fetched` seconds into the
/// day.
pub(crate) fn enriched(day: NaiveDate, i: usize, fetched: i64) -> anyhow::Result<String> {
    let start = day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let at = |s: i64| (start + Span::seconds(s)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let id = format!("results/{i}-A");
    let record = mobaro_sim::records::record("results", &id).context("results exist")?;
    let second = (i % 86_400) as i64;
    Ok(serde_json::json!({
        "event_id": format!("{:032x}", (day.num_days_from_ce() as u128) << 64 | i as u128),
        "resource": "Results", "event": "Updated", "object_id": id,
        "event_timestamp": at(second), "received_at": at(second),
        "fetched_at": at(second + fetched), "status": "found", "record": record,
    })
    .to_string())
}

/// The big day: `rows` rows per table over `files` commits of one file per
/// table, as a sink writes them; one event in `duplicate_every` is
/// delivered again a few files later with a later fetch. Returns the
/// distinct events.
async fn write_big_day(dir: &Path, options: &Options) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let per_file = options.rows.div_ceil(options.files);
    let lag = per_file * 3;
    let mut order = Vec::with_capacity(options.rows);
    let mut next = 0;
    while order.len() < options.rows {
        order.push((next, 0));
        if next >= lag
            && (next - lag).is_multiple_of(options.duplicate_every)
            && order.len() < options.rows
        {
            order.push((next - lag, 60));
        }
        next += 1;
    }
    let distinct = order.iter().map(|(i, _)| *i).max().map_or(0, |m| m + 1);
    let mut writer = Writer::open(dir).await?;
    for chunk in order.chunks(per_file) {
        let records = chunk
            .iter()
            .map(|(i, fetched)| enriched(big_day(), *i, *fetched))
            .collect::<anyhow::Result<Vec<_>>>()?;
        writer.commit(&records).await?;
    }
    Ok(distinct)
}

/// `days` closed days of three rows each, one file per (table, day).
async fn write_small_days(dir: &Path, days: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut writer = Writer::open(dir).await?;
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).context("a date")?;
    // Two files per day, so that each day is due.
    for copy in 0..2 {
        let records = (0..days)
            .flat_map(|d| {
                let day = first + Span::days(d as i64);
                (0..3).map(move |i| enriched(day, i, copy))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        writer.commit(&records).await?;
    }
    Ok(())
}

/// Writes batches of records into Delta tables as the sink does.
pub(crate) struct Writer {
    tables: Tables,
    standing: lake::Standing,
    next_offset: i64,
}

impl Writer {
    pub(crate) async fn open(dir: &Path) -> anyhow::Result<Writer> {
        let lake = Lake::open(dir.to_str().context("a UTF-8 path")?)?;
        let tables = Tables::open(lake, LakeFormat::Delta, "bench.enriched");
        let standing = tables.standing(0, 0).await?;
        Ok(Writer {
            tables,
            standing,
            next_offset: 0,
        })
    }

    /// The Delta tables written.
    pub(crate) fn tables(&self) -> &lake::DeltaTables {
        self.tables.delta().expect("Delta tables")
    }

    pub(crate) async fn commit(&mut self, records: &[String]) -> anyhow::Result<()> {
        let mut files = FileSet::new(Compression::Zstd, 8 << 20);
        for text in records {
            let view = EnrichedView::from_json(text.as_bytes())?;
            files.push(&view, text.len(), |_| false)?;
        }
        let first = self.next_offset;
        let last = first + records.len() as i64 - 1;
        let origin = Origin {
            topic: "bench.enriched",
            partition: 0,
            first,
            last,
        };
        let upload = Upload {
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
        };
        let mut written: Vec<DataFile> = Vec::new();
        for file in files.finish(&origin, Naming::Unique)? {
            let put = self.tables.lake().write_file(&file, &upload).await?;
            ensure!(
                put == lake::Put::Created,
                "{} existed already",
                file.path.in_lake()
            );
            written.push(file.data_file());
        }
        let committed = self.tables.commit(&self.standing, &written, last).await?;
        ensure!(
            matches!(committed, lake::Committed::All),
            "the bench's commit was superseded"
        );
        self.standing.committed(&written, last);
        self.next_offset = last + 1;
        Ok(())
    }
}

/// The Parquet files of each table's days, by table.
fn day_files(lake: &Path) -> anyhow::Result<Vec<(String, Vec<PathBuf>)>> {
    tables_files(lake, &["events", "results"])
}

/// The Parquet files of the days of `tables`, by table.
pub(crate) fn tables_files(
    lake: &Path,
    names: &[&str],
) -> anyhow::Result<Vec<(String, Vec<PathBuf>)>> {
    let mut tables = Vec::new();
    for table in names.iter().copied() {
        let mut files = Vec::new();
        for day in std::fs::read_dir(lake.join(table))? {
            let day = day?.path();
            if !day.is_dir() || day.ends_with("_delta_log") {
                continue;
            }
            for file in std::fs::read_dir(&day)? {
                let file = file?.path();
                if file.extension().is_some_and(|e| e == "parquet") {
                    files.push(file);
                }
            }
        }
        files.sort();
        tables.push((table.to_string(), files));
    }
    Ok(tables)
}

/// `sink compact` on the lake, with its peak RSS read while it runs; the
/// rows it kept are counted from the files the tables hold afterwards.
fn sink_compact(lake: &Path, before: &[(String, Vec<PathBuf>)]) -> anyhow::Result<Measured> {
    let mut command = Command::new(binary("sink"));
    command
        .arg("compact")
        .env("LAKE_URL", lake)
        .env("RUST_LOG", "warn");
    let started = Instant::now();
    let mut sink = Process::spawn("sink", command, &log_dir("bench-compaction-")?)?;
    let mut peak_rss_mib = None;
    let exit = loop {
        if let Some(exit) = sink.try_exit_status()? {
            break exit;
        }
        peak_rss_mib = sink.peak_rss_mib().or(peak_rss_mib);
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    ensure!(exit.success(), "sink compact exited with {exit}");
    let after = day_files(lake)?;
    let mut rows_out = 0;
    let mut bytes_out = 0;
    for ((_, old), (_, now)) in before.iter().zip(&after) {
        for file in now.iter().filter(|f| !old.contains(f)) {
            bytes_out += std::fs::metadata(file)?.len();
            let reader =
                parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file)?)?;
            use parquet::file::reader::FileReader;
            rows_out += reader.metadata().file_metadata().num_rows() as u64;
        }
    }
    Ok(Measured {
        elapsed,
        peak_rss_mib,
        rows_out,
        bytes_out,
    })
}

/// DuckDB with one thread: per table, one row per `event_id` of the day's
/// files by the compaction's ranking, written to zstd Parquet.
fn duckdb(
    python: &Path,
    inputs: &[(String, Vec<PathBuf>)],
    dir: &Path,
) -> anyhow::Result<Measured> {
    const SCRIPT: &str = r#"
import duckdb, json, resource, sys, time, os
tables = json.load(open(sys.argv[1]))
out_dir = sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 1")
con.execute("SET enable_progress_bar = false")
rows = 0
size = 0
started = time.perf_counter()
for name, files in tables:
    out = os.path.join(out_dir, name + ".parquet")
    con.execute(f"""COPY (SELECT * FROM read_parquet({files!r})
        QUALIFY row_number() OVER (PARTITION BY event_id
            ORDER BY (status = 'found') DESC, fetched_at DESC NULLS LAST, received_at ASC NULLS LAST) = 1)
        TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
    rows += con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    size += os.path.getsize(out)
elapsed = time.perf_counter() - started
print(elapsed, rows, size, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;
    let tables: Vec<(String, Vec<String>)> = inputs
        .iter()
        .map(|(name, files)| {
            (
                name.clone(),
                files.iter().map(|f| f.display().to_string()).collect(),
            )
        })
        .collect();
    let listing = dir.join("duckdb-inputs.json");
    std::fs::write(&listing, serde_json::to_vec(&tables)?)?;
    let text = crate::sink::run_duckdb(python, SCRIPT, &[&listing, dir])?;
    let last = text.lines().last().unwrap_or_default();
    let mut fields = last.split_whitespace();
    let mut next = || fields.next().context("duckdb printed too little");
    let elapsed = Duration::from_secs_f64(
        next()?
            .parse()
            .with_context(|| format!("duckdb printed {text:?}"))?,
    );
    let rows_out = next()?.parse()?;
    let bytes_out = next()?.parse()?;
    let peak_kib: f64 = next()?.parse()?;
    Ok(Measured {
        elapsed,
        peak_rss_mib: Some(peak_kib / 1024.0),
        rows_out,
        bytes_out,
    })
}

fn render(
    options: &Options,
    distinct: usize,
    bytes_in: u64,
    ours: &Measured,
    duckdb: &Measured,
    small: Duration,
) -> String {
    let rows_in = 2 * options.rows;
    let rate = |m: &Measured| rows_in as f64 / m.elapsed.as_secs_f64();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let pairs = 2 * options.small_days;
    format!(
        "One closed day of `results` and `events`, {} rows each ({distinct} distinct events: \
one in {} delivered twice, the copy a few files later with a later fetch), in {} files \
per table as a sink writes them ({:.1} MiB in all), in a local lake, compacted to one row per \
event by the ranking of DESIGN.md (found, then the latest fetch, then the earliest receipt).\n\n\
| path | rows read/s | time | peak RSS | rows kept | Parquet written |\n|---|---|---|---|---|---|\n\
| `sink compact` (release) | {:.0} | {:.2} s | {} | {} | {:.1} MiB |\n\
| DuckDB, 1 thread: `COPY (SELECT * FROM read_parquet(files) QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY …) = 1) TO … (zstd)` | {:.0} | {:.2} s | {} | {} | {:.1} MiB |\n\n\
**Ratio sink / DuckDB, rows/s: {:.2}** (target ≥ 0.5); the sink's peak RSS target ≤ 512 MiB.\n\n\
Many small days: {} closed days of 3 rows in two files each, in `results` and `events` \
({pairs} (table, day) pairs), compacted by one `sink compact` in {:.2} s: \
**{:.1} ms per (table, day)** (target ≤ 50 ms).\n",
        options.rows,
        options.duplicate_every,
        options.files,
        mib(bytes_in),
        rate(ours),
        ours.elapsed.as_secs_f64(),
        report::rss(ours.peak_rss_mib),
        ours.rows_out,
        mib(ours.bytes_out),
        rate(duckdb),
        duckdb.elapsed.as_secs_f64(),
        report::rss(duckdb.peak_rss_mib),
        duckdb.rows_out,
        mib(duckdb.bytes_out),
        rate(ours) / rate(duckdb),
        options.small_days,
        small.as_secs_f64(),
        small.as_secs_f64() * 1000.0 / pairs as f64,
    )
}
