//! `lake`: the tables the pipeline writes, whatever writes them: the object
//! store chosen by URL, where files go, Parquet encoding, the table format
//! (Delta Lake or plain Parquet) chosen once as [`Tables`], compaction,
//! vacuum, reading and DDL. It knows nothing of Kafka: a source is a topic
//! name, partitions and offsets.

mod checkup;
mod counted_store;
mod data_file;
mod ddl;
mod delta;
mod encoding;
mod erasure;
mod event_ids;
mod final_through;
mod offsets;
mod parquet;
mod path;
mod provenance;
mod reading;
mod standing;
mod statistics;
mod store;
mod tables;
mod telemetry;

pub use checkup::{
    checkup, Checkup, CheckupSettings, ColumnNulls, DayCheckup, Finding, TableCheckup,
};
pub use data_file::DataFile;
pub use ddl::{create_table, Dialect, LakeFormat, TableSource};
pub use delta::compaction::{
    compact, merge_open_days, CompactionError, CompactionReport, CompactionSettings, DayCompacted,
};
pub use delta::conversion::{convert_to_delta, ConversionError, Converted};
pub use delta::error::DeltaError;
pub use delta::log::DeltaTables;
pub use delta::vacuum::{vacuum, VacuumReport, VacuumSettings, Vacuumed};
pub use encoding::file_set::{EncodedFile, FileSet, Naming, Origin};
pub use encoding::parquet_file::{Compression, EncodingError};
pub use erasure::{
    forget, found_again, Erasure, ErasureError, ErasureKey, ErasureReport, ErasureSettings,
    Erasures, Ledger, LedgerError, Screened, TableErased,
};
pub use event_ids::{digest, EventIds, IdDigest};
pub use final_through::{read as read_final_through, FinalThrough};
pub use offsets::OffsetRange;
pub use path::{DataPath, PARTITION_COLUMN};
pub use provenance::Provenance;
pub use reading::{latest_per_object, ReadError};
pub use standing::{Bounds, Standing};
pub use store::{Lake, LakeError, Lease, Put, Upload};
pub use tables::{Committed, Tables, TablesError};
pub use telemetry::{erased_record, METRICS};
