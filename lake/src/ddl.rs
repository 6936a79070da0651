//! `CREATE TABLE` statements for the lake's tables, derived from the same Arrow
//! schemas the sink writes, so warehouses read the files with the declared
//! types.

use std::fmt::Write;
use std::str::FromStr;

use arrow_schema::{DataType, Field};

use schemas::Table;

/// The engines the lake is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A view over the Parquet files (local folder, or S3 with httpfs).
    DuckDb,
    /// A Hive external table with partition projection on `dt`.
    Athena,
    /// An external table with hive partitioning (files on GCS, or S3 through
    /// BigQuery Omni).
    BigQuery,
    /// An external table over a stage, partitioned by `dt` from the file path.
    Snowflake,
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "duckdb" => Ok(Dialect::DuckDb),
            "athena" => Ok(Dialect::Athena),
            "bigquery" => Ok(Dialect::BigQuery),
            "snowflake" => Ok(Dialect::Snowflake),
            other => Err(format!(
                "unknown dialect {other:?} (duckdb, athena, bigquery or snowflake)"
            )),
        }
    }
}

/// How the lake's tables are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LakeFormat {
    /// Delta Lake tables: files become visible in atomic commits, each
    /// record once per table, compaction and vacuum.
    Delta,
    /// Plain Hive-partitioned Parquet files.
    Parquet,
}

/// Where the lake's tables are and how they are named.
#[derive(Debug, Clone, Copy)]
pub struct TableSource<'a> {
    /// How the tables are kept.
    pub format: LakeFormat,
    /// The lake's URL (`s3://bucket/prefix`, `gs://…`, a folder) or, for
    /// Snowflake, a stage such as `@mobaro_lake`.
    pub location: &'a str,
    /// Prefix of the table names (e.g. `analytics.mobaro_`).
    pub name_prefix: &'a str,
    /// The BigLake connection BigQuery reads Delta tables through
    /// (`project.region.connection`).
    pub bigquery_connection: &'a str,
}

/// The statement creating `table` as `{name_prefix}{table}` over the table
/// under `source.location`, kept in `source.format`.
pub fn create_table(table: Table, dialect: Dialect, source: &TableSource<'_>) -> String {
    match source.format {
        LakeFormat::Parquet => {
            create_parquet_table(table, dialect, source.location, source.name_prefix)
        }
        LakeFormat::Delta => create_delta_table(table, dialect, source),
    }
}

/// A Delta table: engines read the schema, the partitions and the current
/// files from its log.
fn create_delta_table(table: Table, dialect: Dialect, source: &TableSource<'_>) -> String {
    let location = source.location.trim_end_matches('/');
    let name_prefix = source.name_prefix;
    let connection = source.bigquery_connection;
    let name = format!("{name_prefix}{}", table.name());
    let files = format!("{location}/{}", table.name());
    match dialect {
        Dialect::DuckDb => {
            format!("CREATE OR REPLACE VIEW {name} AS\nSELECT * FROM delta_scan('{files}');\n")
        }
        Dialect::Athena => format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {name}\n\
             LOCATION '{files}/'\n\
             TBLPROPERTIES ('table_type' = 'DELTA');\n"
        ),
        Dialect::BigQuery => format!(
            "CREATE OR REPLACE EXTERNAL TABLE `{name}`\n\
             WITH CONNECTION `{connection}`\n\
             OPTIONS (\n  format = 'DELTA_LAKE',\n  uris = ['{files}']\n);\n"
        ),
        Dialect::Snowflake => {
            let dt = "dt DATE AS (PARSE_JSON(METADATA$EXTERNAL_TABLE_PARTITION):dt::DATE)";
            let fields = table.schema();
            let columns = columns(std::iter::once(dt.to_string()).chain(
                fields.fields().iter().map(|f| {
                    let kind = snowflake_type(f.data_type());
                    format!(
                        "{} {kind} AS (VALUE:\"{}\"::{kind})",
                        snowflake_name(f),
                        f.name()
                    )
                }),
            ));
            format!(
                "CREATE OR REPLACE EXTERNAL TABLE {name} (\n{columns}\n)\n\
                 PARTITION BY (dt)\n\
                 LOCATION = {files}/\n\
                 FILE_FORMAT = (TYPE = PARQUET)\n\
                 TABLE_FORMAT = DELTA\n\
                 REFRESH_ON_CREATE = FALSE\n\
                 AUTO_REFRESH = FALSE;\n\
                 -- After each compaction (or on a schedule): ALTER EXTERNAL TABLE {name} REFRESH;\n"
            )
        }
    }
}

fn create_parquet_table(
    table: Table,
    dialect: Dialect,
    location: &str,
    name_prefix: &str,
) -> String {
    let location = location.trim_end_matches('/');
    let name = format!("{name_prefix}{}", table.name());
    let files = format!("{location}/{}", table.name());
    let schema = table.schema();
    let fields = schema.fields();
    let mut sql = String::new();
    match dialect {
        Dialect::DuckDb => {
            let _ = write!(
                sql,
                "CREATE OR REPLACE VIEW {name} AS\nSELECT * FROM read_parquet('{files}/*/*.parquet', hive_partitioning = true);\n"
            );
        }
        Dialect::Athena => {
            let columns = columns(
                fields
                    .iter()
                    .map(|f| format!("`{}` {}", f.name(), hive_type(f.data_type()))),
            );
            let _ = write!(
                sql,
                "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{columns}\n)\n\
                 PARTITIONED BY (dt date)\n\
                 STORED AS PARQUET\n\
                 LOCATION '{files}/'\n\
                 TBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.dt.type' = 'date',\n  \
                 'projection.dt.format' = 'yyyy-MM-dd',\n  'projection.dt.range' = '2020-01-01,NOW',\n  \
                 'projection.dt.interval' = '1',\n  'projection.dt.interval.unit' = 'DAYS',\n  \
                 'storage.location.template' = '{files}/dt=${{dt}}/'\n);\n"
            );
        }
        Dialect::BigQuery => {
            let columns = columns(
                fields
                    .iter()
                    .map(|f| format!("`{}` {}", f.name(), bigquery_type(f.data_type()))),
            );
            let _ = write!(
                sql,
                "CREATE OR REPLACE EXTERNAL TABLE `{name}` (\n{columns}\n)\n\
                 WITH PARTITION COLUMNS (dt DATE)\n\
                 OPTIONS (\n  format = 'PARQUET',\n  enable_list_inference = true,\n  \
                 uris = ['{files}/*'],\n  hive_partition_uri_prefix = '{files}/'\n);\n"
            );
        }
        Dialect::Snowflake => {
            let dt =
                "dt DATE AS TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, 'dt=', 2), '/', 1))";
            let columns = columns(
                std::iter::once(dt.to_string()).chain(fields.iter().map(|f| {
                    let kind = snowflake_type(f.data_type());
                    format!(
                        "{} {kind} AS (VALUE:\"{}\"::{kind})",
                        snowflake_name(f),
                        f.name()
                    )
                })),
            );
            let _ = write!(
                sql,
                "CREATE OR REPLACE EXTERNAL TABLE {name} (\n{columns}\n)\n\
                 PARTITION BY (dt)\n\
                 LOCATION = {files}/\n\
                 FILE_FORMAT = (TYPE = PARQUET)\n\
                 AUTO_REFRESH = FALSE;\n"
            );
        }
    }
    sql
}

fn columns(lines: impl Iterator<Item = String>) -> String {
    lines
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join(",\n")
}

fn hive_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Float64 => "double".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::List(item) => format!("array<{}>", hive_type(item.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => unreachable!("the lake's schemas hold no {other}"),
    }
}

fn bigquery_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "STRING".into(),
        DataType::Boolean => "BOOL".into(),
        DataType::Float64 => "FLOAT64".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::List(item) => format!("ARRAY<{}>", bigquery_type(item.data_type())),
        DataType::Struct(fields) => format!(
            "STRUCT<{}>",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name(), bigquery_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => unreachable!("the lake's schemas hold no {other}"),
    }
}

fn snowflake_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 => "VARCHAR",
        DataType::Boolean => "BOOLEAN",
        DataType::Float64 => "DOUBLE",
        DataType::Timestamp(..) => "TIMESTAMP_TZ",
        DataType::List(_) => "ARRAY",
        DataType::Struct(_) => "OBJECT",
        other => unreachable!("the lake's schemas hold no {other}"),
    }
}

/// Snowflake reserves `values`; the Result answers column is `result_values`.
fn snowflake_name(field: &Field) -> &str {
    match field.name().as_str() {
        "values" => "result_values",
        name => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::Resource;

    fn parquet<'a>(location: &'a str, name_prefix: &'a str) -> TableSource<'a> {
        TableSource {
            format: LakeFormat::Parquet,
            location,
            name_prefix,
            bigquery_connection: "",
        }
    }

    #[test]
    fn every_dialect_names_every_column_with_its_type() {
        let results = Table::Records(Resource::Results);
        for dialect in [
            Dialect::Athena,
            Dialect::BigQuery,
            Dialect::Snowflake,
            Dialect::DuckDb,
        ] {
            let sql = create_table(results, dialect, &parquet("s3://lake/prefix/", "mobaro_"));
            assert!(sql.contains("mobaro_results"), "{sql}");
            assert!(sql.contains("s3://lake/prefix/results"), "{sql}");
            if dialect == Dialect::DuckDb {
                continue;
            }
            for field in results.schema().fields() {
                assert!(sql.contains(field.name().as_str()), "{dialect:?}: {sql}");
            }
        }
        let athena = create_table(results, Dialect::Athena, &parquet("s3://b/p", ""));
        assert!(athena.contains(
            "`values` array<struct<question:string,answers:array<string>,answered_at:timestamp>>"
        ));
        assert!(athena.contains("`event_timestamp` timestamp"));
        let bigquery = create_table(results, Dialect::BigQuery, &parquet("gs://b/p", "d."));
        assert!(bigquery.contains(
            "`values` ARRAY<STRUCT<question STRING, answers ARRAY<STRING>, answered_at TIMESTAMP>>"
        ));
        let snowflake = create_table(results, Dialect::Snowflake, &parquet("@stage", ""));
        assert!(snowflake.contains("result_values ARRAY AS (VALUE:\"values\"::ARRAY)"));
        assert!(snowflake.contains("score DOUBLE AS (VALUE:\"score\"::DOUBLE)"));
    }

    #[test]
    fn delta_tables_are_read_through_their_log() {
        let users = Table::Records(Resource::Users);
        let source = TableSource {
            format: LakeFormat::Delta,
            location: "s3://b/p/",
            name_prefix: "m_",
            bigquery_connection: "p.eu.lake",
        };
        let ddl = |dialect| create_table(users, dialect, &source);
        assert_eq!(
            ddl(Dialect::DuckDb),
            "CREATE OR REPLACE VIEW m_users AS\nSELECT * FROM delta_scan('s3://b/p/users');\n"
        );
        assert!(ddl(Dialect::Athena).contains("'table_type' = 'DELTA'"));
        let bigquery = ddl(Dialect::BigQuery);
        assert!(bigquery.contains("format = 'DELTA_LAKE'"), "{bigquery}");
        assert!(
            bigquery.contains("WITH CONNECTION `p.eu.lake`"),
            "{bigquery}"
        );
        let snowflake = ddl(Dialect::Snowflake);
        assert!(snowflake.contains("TABLE_FORMAT = DELTA"), "{snowflake}");
        assert!(snowflake.contains("METADATA$EXTERNAL_TABLE_PARTITION"));
    }
}
