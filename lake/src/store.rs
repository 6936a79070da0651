//! The object store behind the lake, chosen by URL scheme.

use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use parquet::file::metadata::ParquetMetaDataReader;
use url::Url;

mod lease;
mod staging;

#[cfg(test)]
use staging::STAGING;

pub use lease::Lease;

use crate::counted_store::CountedStore;
use crate::encoding::file_set::EncodedFile;
use crate::encoding::parquet_file::CONTENT_DIGEST_KEY;
use crate::path::DataPath;
use schemas::Table;

#[derive(Debug, thiserror::Error)]
/// Why the lake could not be opened, read or written.
pub enum LakeError {
    #[error("invalid lake url {url:?}: {reason}")]
    /// `LAKE_URL` is not a lake location.
    InvalidUrl {
        /// The location given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    #[error("creating lake folder {path}: {source}")]
    /// A local lake folder could not be created.
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    #[error(transparent)]
    /// The object store failed.
    Store(#[from] object_store::Error),
    #[error("{path} exists but holds other rows than the batch named after it (found {found:?}, expected {expected:?}); nothing past it was committed")]
    /// A file found under a batch's name holds other rows.
    ForeignFile {
        /// The file.
        path: String,
        /// The identity metadata found in it.
        found: BTreeMap<String, String>,
        /// The batch's identity metadata.
        expected: BTreeMap<String, String>,
    },
    #[error("the store at {store} accepted a second create of one key, by a put or by a copy (it ignores If-None-Match): two writers could overwrite each other's commits")]
    /// The store does not refuse a second create of one key.
    NotCreateOnly {
        /// The store.
        store: String,
    },
    #[error("reading the parquet footer of {path}: {source}")]
    /// A Parquet file's footer could not be read.
    Footer {
        /// The file.
        path: String,
        /// Why.
        source: parquet::errors::ParquetError,
    },
}

impl LakeError {
    /// True when repeating the same request cannot succeed: the store
    /// refuses the credentials or the permission, or the request itself.
    /// Outages, throttling and timeouts are transient (`object_store` has
    /// retried those already).
    pub fn is_permanent(&self) -> bool {
        match self {
            LakeError::InvalidUrl { .. }
            | LakeError::Folder { .. }
            | LakeError::Footer { .. }
            | LakeError::ForeignFile { .. }
            | LakeError::NotCreateOnly { .. } => true,
            LakeError::Store(error) => {
                matches!(
                    error,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                        | object_store::Error::InvalidPath { .. }
                        | object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented { .. }
                        | object_store::Error::UnknownConfigurationKey { .. }
                ) || refused_request(error)
            }
        }
    }
}

/// True when the store answered the request with a client error (4xx)
/// that waiting cannot cure, such as S3's 400 `InvalidBucketName`:
/// `object_store` retries none of them and reports those without a variant
/// of their own as `Generic`, its message naming the status. Timeouts
/// (408), conflicts (409) and throttling (429) stay transient.
fn refused_request(error: &object_store::Error) -> bool {
    const STATUS: &str = "Server returned non-2xx status code: ";
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if let Some(at) = text.find(STATUS) {
            let code = text[at + STATUS.len()..]
                .get(..3)
                .and_then(|c| c.parse().ok());
            return matches!(code, Some(400..=499) if !matches!(code, Some(408 | 409 | 429)));
        }
        next = error.source();
    }
    false
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Put {
    /// The object was written.
    Created,
    /// An object of that name was there already; nothing was written.
    AlreadyExisted,
}

/// How large objects are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    /// Objects at least this large are uploaded in parts.
    pub multipart_threshold: usize,
    /// Part size of those uploads.
    pub part_size: usize,
}

/// An object store and the prefix under which the tables live.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    description: String,
    /// The store at the root of `url`'s scheme (the bucket, or `/` for a
    /// folder), where full URLs resolve: Delta readers address the log so.
    root: Arc<dyn ObjectStore>,
    /// The lake's location as a URL ending in `/`.
    url: Url,
    /// Set once [`Lake::check_create_only`] proved that the store refuses a
    /// second create of one key (shared by the clones of this lake).
    create_only: Arc<AtomicBool>,
}

impl Lake {
    /// Opens the lake at `location`: an `s3://`, `gs://`, `az://` (or
    /// `abfss://`), `file://` or `memory://` URL, or a local path. Each
    /// cloud store takes its credentials from the environment, as
    /// object_store's builders read them (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn open(location: &str) -> Result<Lake, LakeError> {
        let invalid = |reason: &str| LakeError::InvalidUrl {
            url: location.to_string(),
            reason: reason.to_string(),
        };
        if !location.contains("://") {
            return Self::local(PathBuf::from(location));
        }
        let url = Url::parse(location).map_err(|e| invalid(&e.to_string()))?;
        match url.scheme() {
            "file" => Self::local(
                url.to_file_path()
                    .map_err(|()| invalid("not an absolute file path"))?,
            ),
            "memory" => Ok(Lake::rooted(Arc::new(InMemory::new()), url, location)),
            "s3" | "s3a" => {
                let bucket = url.host_str().ok_or_else(|| invalid("no bucket"))?;
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let plain_http = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                    .iter()
                    .filter_map(|k| std::env::var(k).ok())
                    .any(|e| e.starts_with("http://"));
                if plain_http {
                    builder = builder.with_allow_http(true);
                }
                // Create-only writes of multipart uploads: complete a copy with
                // If-None-Match (AWS S3, MinIO), unless configured otherwise.
                if builder
                    .get_config_value(&AmazonS3ConfigKey::CopyIfNotExists)
                    .is_none()
                {
                    builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
                }
                Ok(Lake::rooted(Arc::new(builder.build()?), url, location))
            }
            "gs" | "gcs" => {
                let bucket = url.host_str().ok_or_else(|| invalid("no bucket"))?;
                let store = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()?;
                Ok(Lake::rooted(Arc::new(store), url, location))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let store = MicrosoftAzureBuilder::from_env()
                    .with_url(location)
                    .build()?;
                Ok(Lake::rooted(Arc::new(store), url, location))
            }
            other => Err(invalid(&format!(
                "unsupported scheme {other:?} (use a folder, file://, s3://, gs://, az://, abfss:// or memory://)"
            ))),
        }
    }

    /// A lake in `store` (a bucket, or memory) under `url`'s path.
    fn rooted(store: Arc<dyn ObjectStore>, url: Url, location: &str) -> Lake {
        let store = CountedStore::wrap(store);
        Lake {
            root: store.clone(),
            store,
            prefix: Path::from(url.path().trim_matches('/')),
            description: location.to_string(),
            url: directory_url(url),
            create_only: Default::default(),
        }
    }

    fn local(path: PathBuf) -> Result<Lake, LakeError> {
        std::fs::create_dir_all(&path).map_err(|source| LakeError::Folder {
            path: path.clone(),
            source,
        })?;
        let path = path.canonicalize().map_err(|source| LakeError::Folder {
            path: path.clone(),
            source,
        })?;
        let url = Url::from_directory_path(&path).map_err(|()| LakeError::InvalidUrl {
            url: path.display().to_string(),
            reason: "not an absolute folder".into(),
        })?;
        Ok(Lake {
            store: CountedStore::wrap(Arc::new(LocalFileSystem::new_with_prefix(&path)?)),
            description: path.display().to_string(),
            prefix: Path::default(),
            root: CountedStore::wrap(Arc::new(LocalFileSystem::new())),
            url,
            create_only: Default::default(),
        })
    }

    /// The store under `relative` (a table's folder), the store where the
    /// URLs of the lake resolve, and the folder's URL (ending in `/`).
    pub(crate) fn folder(
        &self,
        relative: &str,
    ) -> (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>, Url) {
        let prefixed = Arc::new(object_store::prefix::PrefixStore::new(
            self.store.clone(),
            self.path(relative),
        ));
        let mut url = self.url.clone();
        url.set_path(&format!(
            "{}{}/",
            self.url.path(),
            relative.trim_matches('/')
        ));
        (prefixed, self.root.clone(), url)
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the lake is, for people.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The path of `relative` under the lake's prefix.
    pub fn path(&self, relative: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// Writes an object only if it does not exist yet.
    pub async fn create(&self, path: &Path, bytes: bytes::Bytes) -> Result<Put, LakeError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(Put::Created),
            Err(object_store::Error::AlreadyExists { .. }) => self.confirm_exists(path).await,
            Err(error) => Err(error.into()),
        }
    }

    /// Writes an object, replacing what is there (for small documents one
    /// writer at a time owns, never for data or log entries).
    pub async fn replace(&self, path: &Path, bytes: bytes::Bytes) -> Result<(), LakeError> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(Into::into)
    }

    /// A create reported as refused counts as "already existed" only once a
    /// HEAD shows the object: S3 answers a conditional write that raced
    /// another with 409, which `object_store` reports as `AlreadyExists`
    /// though nothing may have landed. Otherwise a transient error, retried.
    async fn confirm_exists(&self, path: &Path) -> Result<Put, LakeError> {
        match self.store.head(path).await {
            Ok(_) => Ok(Put::AlreadyExisted),
            Err(object_store::Error::NotFound { .. }) => {
                Err(LakeError::Store(object_store::Error::Generic {
                    store: "lake",
                    source: format!("a create of {path} was refused, but no object is there")
                        .into(),
                }))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The bytes of the object at `path`, or None when there is none.
    pub async fn read_if_exists(&self, path: &Path) -> Result<Option<bytes::Bytes>, LakeError> {
        match self.store.get(path).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Proves that the store refuses a second create of one key (a put with
    /// `If-None-Match: *` on S3), which the tables' commits rely on: two
    /// writers must never both create one log entry. Writes and removes one
    /// small object under `_sink_checks/`.
    pub async fn check_create_only(&self) -> Result<(), LakeError> {
        let probe = self.path(&format!(
            "{CHECKS}/create-only-{:016x}",
            rand::random::<u64>()
        ));
        let first = self.create(&probe, "1".into()).await?;
        let second = self.create(&probe, "2".into()).await;
        // Large files are created by a copy that must refuse an existing
        // target too.
        let copied = format!("{probe}-copy").into();
        let copies = match self.store.copy_if_not_exists(&probe, &copied).await {
            Ok(()) => self.store.copy_if_not_exists(&probe, &copied).await,
            Err(error) => Err(error),
        };
        for path in [&probe, &copied] {
            if let Err(error) = self.store.delete(path).await {
                tracing::warn!(%error, %path, "removing the create-only probe failed");
            }
        }
        let copy_refused = matches!(copies, Err(object_store::Error::AlreadyExists { .. }));
        match (first, second?) {
            (Put::Created, Put::AlreadyExisted) if copy_refused => {
                self.create_only.store(true, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(LakeError::NotCreateOnly {
                store: self.description.clone(),
            }),
        }
    }

    /// True once [`Lake::check_create_only`] passed: a create-only write
    /// that succeeds is then proof that no other writer created the key, so
    /// a Delta commit needs no listing of the log beforehand.
    pub fn proven_create_only(&self) -> bool {
        self.create_only.load(Ordering::Relaxed)
    }

    /// The data path of the object at `location`, when it is a data file of
    /// `table` (`{table}/dt=…/{stem}.parquet` under the lake's prefix).
    pub(crate) fn data_path(&self, table: Table, location: &Path) -> Option<DataPath> {
        let folder = self.path(table.name());
        let relative: Vec<String> = location
            .prefix_match(&folder)?
            .map(|part| part.as_ref().to_string())
            .collect();
        DataPath::parse_in_table(table, &relative.join("/"))
    }

    /// The first object under the folder `relative`, if any: one listing
    /// request.
    pub async fn first_under(&self, relative: &str) -> Result<Option<String>, LakeError> {
        use futures::StreamExt;
        let prefix = self.path(relative);
        let mut listing = self.store.list(Some(&prefix));
        match listing.next().await {
            Some(found) => Ok(Some(found?.location.to_string())),
            None => Ok(None),
        }
    }

    /// Writes `bytes` to `path` only if it does not exist yet, in parts
    /// when large.
    pub async fn put(
        &self,
        path: &Path,
        bytes: bytes::Bytes,
        upload: &Upload,
    ) -> Result<Put, LakeError> {
        if bytes.len() >= upload.multipart_threshold {
            self.create_multipart(path, bytes, upload.part_size).await
        } else {
            self.create(path, bytes).await
        }
    }

    /// Writes an encoded data file only if its path is free.
    pub async fn write_file(&self, file: &EncodedFile, upload: &Upload) -> Result<Put, LakeError> {
        self.put(&self.path(&file.path.in_lake()), file.bytes.clone(), upload)
            .await
    }

    /// Checks that the file found under `file`'s path holds the same rows:
    /// its identity metadata matches (the content digest is compared when
    /// the found file carries one).
    pub async fn confirm_identity(&self, file: &EncodedFile) -> Result<(), LakeError> {
        let path = self.path(&file.path.in_lake());
        let found = self.parquet_metadata(&path).await?;
        let expected: BTreeMap<String, String> = file.identity.iter().cloned().collect();
        let same = expected.iter().all(|(key, value)| {
            found.get(key) == Some(value) || (key == CONTENT_DIGEST_KEY && !found.contains_key(key))
        });
        if same {
            return Ok(());
        }
        Err(LakeError::ForeignFile {
            path: path.to_string(),
            found: found
                .into_iter()
                .filter(|(key, _)| key.starts_with("mobaro_lake."))
                .collect(),
            expected,
        })
    }

    /// The key-value metadata in the footer of the Parquet file at `path`,
    /// read with two ranged requests at most.
    pub async fn parquet_metadata(
        &self,
        path: &Path,
    ) -> Result<BTreeMap<String, String>, LakeError> {
        let metadata = self.parquet_footer(path).await?;
        Ok(metadata
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
            .collect())
    }

    /// The footer of the Parquet file at `path`, read with a HEAD and two
    /// ranged requests at most.
    pub(crate) async fn parquet_footer(
        &self,
        path: &Path,
    ) -> Result<parquet::file::metadata::ParquetMetaData, LakeError> {
        const TAIL: u64 = 64 * 1024;
        let footer_error = |source| LakeError::Footer {
            path: path.to_string(),
            source,
        };
        let size = self.store.head(path).await?.size;
        let mut tail = self
            .store
            .get_range(path, size.saturating_sub(TAIL)..size)
            .await?;
        let length = match tail.len().checked_sub(8).map(|at| &tail[at..]) {
            Some([a, b, c, d, b'P', b'A', b'R', b'1']) => {
                u64::from(u32::from_le_bytes([*a, *b, *c, *d])) + 8
            }
            _ => {
                return Err(footer_error(parquet::errors::ParquetError::General(
                    "not a parquet file".into(),
                )))
            }
        };
        if length > tail.len() as u64 {
            tail = self
                .store
                .get_range(path, size.saturating_sub(length)..size)
                .await?;
        }
        let footer = &tail[tail.len() - length as usize..tail.len() - 8];
        ParquetMetaDataReader::decode_metadata(footer).map_err(footer_error)
    }
}

/// `url` with a path ending in `/`, so that names join under it.
fn directory_url(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// Where the checks of the store write their probes.
const CHECKS: &str = "_sink_checks";

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn stored(lake: &Lake, path: &Path) -> bytes::Bytes {
        let object = lake.store().get(path).await.expect("get");
        object.bytes().await.expect("bytes")
    }

    #[tokio::test]
    async fn creating_twice_keeps_the_first_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path().to_str().expect("utf8")).expect("opens");
        let path = lake.path("users/dt=2025-01-01/a.parquet");
        assert_eq!(
            lake.create(&path, "one".into()).await.expect("writes"),
            Put::Created
        );
        assert_eq!(
            lake.create(&path, "two".into()).await.expect("no error"),
            Put::AlreadyExisted
        );
        let stored = stored(&lake, &path).await;
        assert_eq!(&stored[..], b"one");
    }

    #[tokio::test]
    async fn multipart_creation_keeps_the_first_object_and_no_staging() {
        for location in ["memory:///lake", "folder"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let location = if location == "folder" {
                dir.path().to_str().expect("utf8").to_string()
            } else {
                location.to_string()
            };
            let lake = Lake::open(&location).expect("opens");
            let path = lake.path("results/dt=2025-01-01/a.parquet");
            let big = bytes::Bytes::from(vec![7u8; 300_000]);
            assert_eq!(
                lake.create_multipart(&path, big.clone(), 100_000)
                    .await
                    .expect("writes"),
                Put::Created
            );
            assert_eq!(
                lake.create_multipart(&path, "two".into(), 100_000)
                    .await
                    .expect("no error"),
                Put::AlreadyExisted
            );
            let stored = stored(&lake, &path).await;
            assert_eq!(stored, big);
            let staged: Vec<_> = lake.store().list(Some(&lake.path(STAGING))).collect().await;
            assert!(staged.is_empty(), "{location}: {staged:?}");
        }
    }

    /// An S3 endpoint answering every request with `status` and an S3
    /// error body naming `code`.
    async fn refusing_endpoint(status: &'static str, code: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = vec![0u8; 64 << 10];
                let _read = stream.read(&mut request).await;
                let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>");
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _written = stream.write_all(response.as_bytes()).await;
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_request_the_store_refuses_is_permanent() {
        use object_store::aws::AmazonS3Builder;
        for (status, code, permanent) in [
            ("400 Bad Request", "InvalidBucketName", true),
            ("400 Bad Request", "InvalidArgument", true),
            ("429 Too Many Requests", "SlowDown", false),
        ] {
            let store = AmazonS3Builder::new()
                .with_endpoint(refusing_endpoint(status, code).await)
                .with_allow_http(true)
                .with_bucket_name("a_bucket")
                .with_region("us-east-1")
                .with_access_key_id("key")
                .with_secret_access_key("secret")
                .with_retry(object_store::RetryConfig {
                    max_retries: 0,
                    ..Default::default()
                })
                .build()
                .expect("builds");
            let error = store
                .put(&Path::from("a/b.parquet"), "x".into())
                .await
                .expect_err("refused");
            assert_eq!(
                LakeError::Store(error).is_permanent(),
                permanent,
                "{status} {code}"
            );
        }
    }

    #[test]
    fn refusals_are_permanent_and_outages_transient() {
        let store = |error| LakeError::Store(error);
        let source = || Box::<dyn std::error::Error + Send + Sync>::from("refused");
        assert!(store(object_store::Error::PermissionDenied {
            path: "x".into(),
            source: source()
        })
        .is_permanent());
        assert!(store(object_store::Error::Unauthenticated {
            path: "x".into(),
            source: source()
        })
        .is_permanent());
        assert!(!store(object_store::Error::Generic {
            store: "S3",
            source: source()
        })
        .is_permanent());
        assert!(!store(object_store::Error::NotFound {
            path: "x".into(),
            source: source()
        })
        .is_permanent());
    }

    #[tokio::test]
    async fn the_footer_metadata_of_a_written_file_reads_back() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let (bytes, identity) = crate::encoding::parquet_file::one_event_file(vec![(
            "mobaro_lake.topic".into(),
            "t".into(),
        )]);
        let path = lake.path("events/a.parquet");
        assert_eq!(
            lake.create(&path, bytes).await.expect("writes"),
            Put::Created
        );
        let mut found = lake.parquet_metadata(&path).await.expect("reads");
        found.retain(|key, _| key.starts_with("mobaro_lake."));
        let expected: BTreeMap<String, String> = identity.into_iter().collect();
        assert_eq!(found, expected);
        assert!(found.contains_key(crate::encoding::parquet_file::CONTENT_DIGEST_KEY));
    }

    /// A store that ignores create-only puts, as some S3-compatible servers
    /// ignore `If-None-Match`.
    #[derive(Debug)]
    struct Overwriting(InMemory);

    impl std::fmt::Display for Overwriting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Overwriting")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Overwriting {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            mut opts: PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            opts.mode = PutMode::Overwrite;
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            _options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy(from, to).await
        }
    }

    #[tokio::test]
    async fn a_lease_is_held_for_its_duration_then_taken_again() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(
            lake.take_lease("upkeep", hour).await.expect("takes"),
            Lease::Taken
        );
        assert_eq!(
            lake.take_lease("upkeep", hour).await.expect("reads"),
            Lease::Held
        );
        assert_eq!(
            lake.take_lease("other", hour).await.expect("takes"),
            Lease::Taken
        );
        // Expired: taken again.
        assert_eq!(
            lake.take_lease("upkeep", std::time::Duration::ZERO)
                .await
                .expect("takes"),
            Lease::Taken
        );
    }

    #[tokio::test]
    async fn staged_uploads_left_behind_are_swept_once_old() {
        let lake = Lake::open("memory:///lake").expect("opens");
        let staged = lake.path(&format!("{STAGING}/0123"));
        let _ = lake.create(&staged, "left".into()).await.expect("writes");
        let young = lake
            .sweep_staging(std::time::Duration::from_secs(3600))
            .await
            .expect("sweeps");
        assert_eq!(young, 0);
        let old = lake
            .sweep_staging(std::time::Duration::ZERO)
            .await
            .expect("sweeps");
        assert_eq!(old, 1);
        assert!(lake.store().head(&staged).await.is_err());
    }

    #[tokio::test]
    async fn a_store_that_ignores_create_only_puts_is_refused() {
        let url = Url::parse("memory:///lake").expect("a url");
        let honest = Lake::rooted(Arc::new(InMemory::new()), url.clone(), "memory:///lake");
        honest
            .check_create_only()
            .await
            .expect("refuses a second create");
        let careless = Lake::rooted(
            Arc::new(Overwriting(InMemory::new())),
            url,
            "memory:///careless",
        );
        let refused = careless.check_create_only().await;
        assert!(
            matches!(&refused, Err(LakeError::NotCreateOnly { store }) if store == "memory:///careless"),
            "{refused:?}"
        );
        let leftovers: Vec<_> = careless.store().list(None).collect().await;
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn rejects_unknown_schemes() {
        assert!(matches!(
            Lake::open("ftp://x/y"),
            Err(LakeError::InvalidUrl { .. })
        ));
        let lake = Lake::open("memory:///some/prefix").expect("opens");
        assert_eq!(lake.path("t/x.parquet").as_ref(), "some/prefix/t/x.parquet");
    }
}
