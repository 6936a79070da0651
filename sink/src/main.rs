//! `sink`: enriched records to Delta Lake tables (or plain Parquet) in an object store.

/// jemalloc instead of glibc's allocator: glibc gives threads that contend
/// for memory arenas of their own and keeps what is freed in them, so
/// compaction's encoding threads held twice its heap as resident memory
/// (a 1M-row day: 575 MiB RSS for a 250 MiB heap).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    runtime::launch(sink::run)
}
