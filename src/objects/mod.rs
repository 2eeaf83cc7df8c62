//! Object storage: where a fleet keeps its outputs (S3-compatible storage, or a folder).
//!
//! A finished VOD output is uploaded as a whole folder in an order that keeps every reader
//! safe: media and init segments first (in parallel, large ones in parts), then the media
//! playlists, then the top-level manifests. A reader therefore never finds a manifest that
//! names an object not yet there.
//!
//! Locations: `s3://bucket/prefix` (endpoint, region and credentials from the usual AWS
//! environment variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` for a plain-HTTP endpoint), or `file:///folder`.

mod archive;

pub use archive::{LiveArchive, LIVE_PREFIX};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;

/// Uploads running at once for one output.
const PARALLEL_UPLOADS: usize = 8;
/// Above this an object goes up in parts of this size (S3's minimum part is 5 MiB).
const PART_SIZE: usize = 8 << 20;

/// An object store and the prefix under which this node writes.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    /// The location as the user wrote it, without a trailing `/`: the base of object URLs.
    location: String,
}

/// Two handles on the same location are the same store.
impl PartialEq for Objects {
    fn eq(&self, other: &Objects) -> bool {
        self.location == other.location
    }
}

impl Eq for Objects {}

/// An object read whole, with what HTTP validators need.
#[derive(Debug, Clone)]
pub struct Stored {
    pub body: bytes::Bytes,
    /// The store's entity tag, when it gives one.
    pub etag: Option<String>,
    pub modified: std::time::SystemTime,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("location", &self.location)
            .finish()
    }
}

/// An object that could not be written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadError {
    /// The object's URL (`s3://bucket/prefix/…`).
    pub object: String,
    pub reason: String,
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write {}: {}", self.object, self.reason)
    }
}

impl Objects {
    /// Opens `s3://bucket/prefix` or `file:///folder`. Nothing is contacted yet.
    pub fn open(location: &str) -> Result<Objects, String> {
        let location = location.trim_end_matches('/').to_owned();
        let (store, prefix): (Arc<dyn ObjectStore>, &str) =
            if let Some(rest) = location.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(format!("{location}: no bucket (s3://BUCKET/PREFIX)"));
                }
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: 4,
                        retry_timeout: Duration::from_secs(60),
                        ..RetryConfig::default()
                    })
                    .build()
                    .map_err(|e| format!("{location}: {e}"))?;
                (Arc::new(s3), prefix)
            } else if let Some(folder) = location.strip_prefix("file://") {
                std::fs::create_dir_all(folder).map_err(|e| format!("{location}: {e}"))?;
                let local = LocalFileSystem::new_with_prefix(folder)
                    .map_err(|e| format!("{location}: {e}"))?;
                (Arc::new(local), "")
            } else {
                return Err(format!(
                "{location}: not an object store location (s3://BUCKET/PREFIX or file:///FOLDER)"
            ));
            };
        let prefix = Key::parse(prefix).map_err(|e| format!("{location}: {e}"))?;
        Ok(Objects {
            store,
            prefix,
            location,
        })
    }

    /// A store held in memory (for tests of the code around it).
    pub fn in_memory() -> Objects {
        Objects {
            store: Arc::new(object_store::memory::InMemory::new()),
            prefix: Key::from("out"),
            location: "memory://out".into(),
        }
    }

    /// The URL of the object at `relative` (e.g. `job-1/master.m3u8`).
    pub fn url(&self, relative: &str) -> String {
        format!("{}/{relative}", self.location)
    }

    fn key(&self, relative: &str) -> Key {
        self.prefix
            .parts()
            .chain(Key::from(relative).parts())
            .collect()
    }

    /// Uploads every file under `folder` to `{name}/…`, segments first and manifests last
    /// (module docs). Returns the URLs of what was written, in the order written.
    pub async fn upload_folder(
        &self,
        folder: &Path,
        name: &str,
    ) -> Result<Vec<String>, UploadError> {
        let files = files_under(folder).map_err(|e| UploadError {
            object: self.url(name),
            reason: format!("cannot list {}: {e}", folder.display()),
        })?;
        let mut written = Vec::with_capacity(files.len());
        for wave in upload_waves(files) {
            let urls: Vec<String> = futures_util::stream::iter(wave)
                .map(|relative| async move {
                    let relative_key = format!("{name}/{relative}");
                    self.upload_file(&folder.join(&relative), &relative_key)
                        .await
                        .map(|()| self.url(&relative_key))
                })
                .buffer_unordered(PARALLEL_UPLOADS)
                .try_collect()
                .await?;
            written.extend(urls);
        }
        Ok(written)
    }

    /// One file, streamed: in one request up to PART_SIZE, in parts above.
    async fn upload_file(&self, file: &Path, relative: &str) -> Result<(), UploadError> {
        let failed = |reason: String| UploadError {
            object: self.url(relative),
            reason,
        };
        let mut source = tokio::fs::File::open(file)
            .await
            .map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
        let mut sink = BufWriter::with_capacity(self.store.clone(), self.key(relative), PART_SIZE);
        let copied = tokio::io::copy(&mut source, &mut sink).await;
        let finished = match copied {
            Ok(_) => sink.shutdown().await,
            Err(e) => {
                let _ = sink.abort().await;
                Err(e)
            }
        };
        finished.map_err(|e| failed(e.to_string()))
    }

    /// Writes `body` to `relative` in one request (small objects: live segments, manifests).
    pub async fn put(&self, relative: &str, body: bytes::Bytes) -> Result<(), UploadError> {
        self.store
            .put(&self.key(relative), object_store::PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| UploadError {
                object: self.url(relative),
                reason: e.to_string(),
            })
    }

    /// Reads the object at `relative` whole; `None` when there is none.
    pub async fn get(&self, relative: &str) -> Result<Option<Stored>, String> {
        let got = match self.store.get(&self.key(relative)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.url(relative))),
        };
        let etag = got.meta.e_tag.clone();
        let modified = std::time::SystemTime::from(got.meta.last_modified);
        let body = got
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.url(relative)))?;
        Ok(Some(Stored {
            body,
            etag,
            modified,
        }))
    }

    /// Reads an object whole (small objects: manifests, tests).
    pub async fn read(&self, relative: &str) -> Result<bytes::Bytes, String> {
        let got = self
            .store
            .get(&self.key(relative))
            .await
            .map_err(|e| format!("{}: {e}", self.url(relative)))?;
        got.bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.url(relative)))
    }
}

/// An input object, `s3://BUCKET/KEY`, as FFmpeg opens it: a presigned `GET` URL (valid for
/// [`INPUT_URL_LIFETIME`]) that FFmpeg reads with byte ranges, so the object streams in and is
/// never copied whole to disk. Credentials, region and endpoint: the AWS environment variables.
pub struct InputObject {
    pub url: String,
    store: object_store::aws::AmazonS3,
    key: Key,
}

/// How long a presigned input URL stays valid: longer than any transcode.
pub const INPUT_URL_LIFETIME: Duration = Duration::from_secs(12 * 3600);

impl InputObject {
    /// Parses `s3://BUCKET/KEY`; `None` for other locations.
    pub fn parse(url: &str) -> Option<Result<InputObject, String>> {
        let rest = url.strip_prefix("s3://")?;
        let parsed = (|| {
            let (bucket, key) = rest
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| format!("{url}: expected s3://BUCKET/KEY"))?;
            // A submission waits for the check: a few quick tries, not minutes.
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(10),
                    ..RetryConfig::default()
                })
                .build()
                .map_err(|e| format!("{url}: {e}"))?;
            let key = Key::parse(key).map_err(|e| format!("{url}: {e}"))?;
            Ok(InputObject {
                url: url.to_owned(),
                store,
                key,
            })
        })();
        Some(parsed)
    }

    /// Whether the object is there and readable (a `HEAD` request).
    pub async fn check(&self) -> Result<(), String> {
        self.store
            .head(&self.key)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => format!("{}: no such object", self.url),
                e => format!("{}: {e}", self.url),
            })
    }

    /// The presigned URL FFmpeg opens.
    pub async fn presigned(&self) -> Result<String, String> {
        use object_store::signer::Signer;
        self.store
            .signed_url(axum::http::Method::GET, &self.key, INPUT_URL_LIFETIME)
            .await
            .map(|u| u.to_string())
            .map_err(|e| format!("{}: {e}", self.url))
    }
}

/// Files under `folder`, as `/`-separated paths relative to it, sorted.
fn files_under(folder: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending: Vec<PathBuf> = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(folder) {
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The order that keeps readers safe: everything that is not a manifest, then the manifests
/// inside rendition folders, then the top-level ones (which name those).
fn upload_waves(files: Vec<String>) -> Vec<Vec<String>> {
    let is_manifest = |f: &str| f.ends_with(".m3u8") || f.ends_with(".mpd");
    let mut waves = vec![Vec::new(), Vec::new(), Vec::new()];
    for f in files {
        let wave = match (is_manifest(&f), f.contains('/')) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        waves[wave].push(f);
    }
    waves.retain(|w| !w.is_empty());
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_go_last_top_level_ones_after_media_playlists() {
        let files = [
            "manifest.mpd",
            "master.m3u8",
            "720p/index.m3u8",
            "720p/0.m4s",
            "720p/init.mp4",
            "audio/index.m3u8",
            "audio/0.m4s",
        ]
        .map(String::from)
        .to_vec();
        let waves = upload_waves(files);
        assert_eq!(waves.len(), 3);
        assert!(waves[0]
            .iter()
            .all(|f| f.ends_with(".m4s") || f.ends_with(".mp4")));
        assert_eq!(waves[1], ["720p/index.m3u8", "audio/index.m3u8"]);
        assert_eq!(waves[2], ["manifest.mpd", "master.m3u8"]);
    }

    #[tokio::test]
    async fn a_folder_lands_whole_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("360p")).unwrap();
        std::fs::write(dir.path().join("master.m3u8"), "#EXTM3U\n").unwrap();
        std::fs::write(dir.path().join("360p/0.m4s"), vec![7u8; PART_SIZE * 2 + 3]).unwrap();
        let objects = Objects::in_memory();
        let written = objects.upload_folder(dir.path(), "job-1").await.unwrap();
        assert_eq!(
            written,
            [
                "memory://out/job-1/360p/0.m4s",
                "memory://out/job-1/master.m3u8"
            ]
        );
        let big = objects.read("job-1/360p/0.m4s").await.unwrap();
        assert_eq!(big.len(), PART_SIZE * 2 + 3);
        assert_eq!(
            &objects.read("job-1/master.m3u8").await.unwrap()[..],
            b"#EXTM3U\n"
        );
    }

    #[test]
    fn locations_are_checked() {
        assert!(Objects::open("s3:///x").unwrap_err().contains("no bucket"));
        assert!(Objects::open("ftp://x")
            .unwrap_err()
            .contains("not an object store"));
    }
}
