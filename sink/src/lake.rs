//! The object store behind the lake, chosen by URL scheme.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lake url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("creating lake folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// An object store and the prefix under which the tables live.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    description: String,
}

impl Lake {
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
            "memory" => Ok(Lake {
                store: Arc::new(InMemory::new()),
                prefix: Path::from(url.path().trim_matches('/')),
                description: location.to_string(),
            }),
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
                Ok(Lake {
                    store: Arc::new(builder.build()?),
                    prefix: Path::from(url.path().trim_matches('/')),
                    description: location.to_string(),
                })
            }
            other => Err(invalid(&format!(
                "unsupported scheme {other:?} (use a folder, file://, s3:// or memory://)"
            ))),
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
        Ok(Lake {
            store: Arc::new(LocalFileSystem::new_with_prefix(&path)?),
            description: path.display().to_string(),
            prefix: Path::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the lake is, for people.
    pub fn describe(&self) -> &str {
        &self.description
    }

    pub fn path(&self, relative: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.child(part);
        }
        path
    }

    /// Writes an object only if it does not exist yet. Returns false when it
    /// already existed: an earlier run wrote the same data under the same name.
    pub async fn create(&self, path: &Path, bytes: bytes::Bytes) -> Result<bool, LakeError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creating_twice_keeps_the_first_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(dir.path().to_str().expect("utf8")).expect("opens");
        let path = lake.path("users/dt=2025-01-01/a.parquet");
        assert!(lake.create(&path, "one".into()).await.expect("writes"));
        assert!(!lake.create(&path, "two".into()).await.expect("no error"));
        let stored = lake
            .store()
            .get(&path)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&stored[..], b"one");
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
