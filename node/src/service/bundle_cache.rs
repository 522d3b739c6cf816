//! Unpacked bundle tools (contract section 11): each `tool.zip` is unpacked once, under its
//! sha256, into the node's bundle directory and reused by every later call. Concurrent first
//! calls of one bundle unpack it once. Past `cache_max_bytes`, the least recently used bundles
//! that are not running are removed (and unpacked again when next called).
//!
//! A bundle is unpacked into a temporary directory and renamed into place, so a directory under
//! its sha256 is always complete. The digest of what was unpacked (every path, kind, mode and
//! content) is recorded beside it (`.trees/<sha256>`); a directory found at start, from an
//! earlier run, is reused only if it still has that digest — one that was changed (a run that
//! wrote into it, anyone with the node's user) or has no record is unpacked again.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use gridnode_store::sha256_hex;

use crate::error::{Error, Result};
use crate::service::bundle::check_name;

/// The cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BundleCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    max_unpacked: u64,
    entries: Mutex<HashMap<String, Entry>>,
    /// One lock per bundle being unpacked, so concurrent first calls unpack once.
    unpacking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tick: AtomicU64,
    unpacks: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    bytes: u64,
    last_used: u64,
    running: u32,
}

/// An unpacked bundle, held while a call runs it (it is not evicted meanwhile).
#[derive(Debug)]
pub struct Lease {
    inner: Arc<Inner>,
    sha256: String,
    dir: PathBuf,
}

impl Lease {
    /// The bundle's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(entry) = self.inner.entries().get_mut(&self.sha256) {
            entry.running = entry.running.saturating_sub(1);
        }
    }
}

/// What the cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BundleStats {
    pub unpacks: u64,
    pub evictions: u64,
    pub cached: usize,
    pub cached_bytes: u64,
}

impl BundleCache {
    /// A cache in `dir` holding at most `max_bytes` unpacked; one archive may unpack to at most
    /// `max_unpacked` bytes.
    pub fn new(dir: PathBuf, max_bytes: u64, max_unpacked: u64) -> BundleCache {
        BundleCache {
            inner: Arc::new(Inner {
                dir,
                max_bytes,
                max_unpacked,
                entries: Mutex::default(),
                unpacking: Mutex::default(),
                tick: AtomicU64::new(0),
                unpacks: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    pub fn stats(&self) -> BundleStats {
        let entries = self.inner.entries();
        BundleStats {
            unpacks: self.inner.unpacks.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            cached: entries.len(),
            cached_bytes: entries.values().map(|e| e.bytes).sum(),
        }
    }

    /// The unpacked bundle `sha256`, unpacking it first if needed from the bytes `fetch` gives
    /// (checked against the sha256 here, whatever their source).
    pub async fn acquire<F>(&self, sha256: &str, fetch: F) -> Result<Lease>
    where
        F: Future<Output = Result<Bytes>>,
    {
        if let Some(lease) = self.lease(sha256) {
            return Ok(lease);
        }
        let lock = self
            .inner
            .unpacking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(sha256.to_owned())
            .or_default()
            .clone();
        let _unpacking = lock.lock().await;
        if let Some(lease) = self.lease(sha256) {
            return Ok(lease);
        }
        let dir = self.inner.dir.join(sha256);
        let (root, sha) = (self.inner.dir.clone(), sha256.to_owned());
        // Unpacked by an earlier run (directories appear complete, by rename): reused only as
        // it was unpacked.
        let kept = if dir.is_dir() { blocking(move || intact(&root, &sha)).await? } else { None };
        let bytes = if let Some(bytes) = kept {
            bytes
        } else {
            let zip = fetch.await?;
            let (root, target, limit) =
                (self.inner.dir.clone(), dir.clone(), self.inner.max_unpacked);
            let expected = sha256.to_owned();
            let size = blocking(move || {
                let found = sha256_hex(&zip);
                if found != expected {
                    return Err(Error::Unreachable(format!(
                        "the bundle's bytes do not match its sha256 (expected {expected}, got {found}): refused"
                    )));
                }
                unpack(&zip, &root, &target, &expected, limit)
            })
            .await?;
            self.inner.unpacks.fetch_add(1, Ordering::Relaxed);
            size
        };
        let tick = self.inner.tick.fetch_add(1, Ordering::Relaxed);
        // The per-bundle lock stays in its map (a few bytes per bundle ever run), so no second
        // lock can ever let two unpacks of one bundle race.
        self.inner.entries().entry(sha256.to_owned()).or_insert(Entry {
            bytes,
            last_used: tick,
            running: 0,
        });
        let lease = self
            .lease(sha256)
            .ok_or_else(|| Error::Internal("an unpacked bundle left the cache at once".into()))?;
        self.evict().await;
        Ok(lease)
    }

    fn lease(&self, sha256: &str) -> Option<Lease> {
        let mut entries = self.inner.entries();
        let entry = entries.get_mut(sha256)?;
        entry.running += 1;
        entry.last_used = self.inner.tick.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            inner: self.inner.clone(),
            sha256: sha256.to_owned(),
            dir: self.inner.dir.join(sha256),
        })
    }

    /// Removes the least recently used bundles not running until the total fits. Each is
    /// renamed away under the lock (so no call finds a half-removed directory), then deleted.
    async fn evict(&self) {
        let trash: Vec<PathBuf> = {
            let mut entries = self.inner.entries();
            let mut total: u64 = entries.values().map(|e| e.bytes).sum();
            let mut idle: Vec<(u64, String, u64)> = entries
                .iter()
                .filter(|(_, e)| e.running == 0)
                .map(|(sha, e)| (e.last_used, sha.clone(), e.bytes))
                .collect();
            idle.sort();
            let mut trash = Vec::new();
            for (_, sha, bytes) in idle {
                if total <= self.inner.max_bytes {
                    break;
                }
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let moved =
                    self.inner.dir.join(format!(".evicted-{sha}-{}-{n}", std::process::id()));
                if std::fs::rename(self.inner.dir.join(&sha), &moved).is_ok() {
                    trash.push(moved);
                }
                entries.remove(&sha);
                total -= bytes;
                self.inner.evictions.fetch_add(1, Ordering::Relaxed);
            }
            trash
        };
        if !trash.is_empty() {
            let _ = blocking(move || {
                for dir in trash {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Ok(())
            })
            .await;
        }
    }
}

impl Inner {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("bundle task failed: {e}")))?
}

/// Where the digest of the bundle `sha256`'s unpacked tree is recorded.
fn tree_record(root: &Path, sha256: &str) -> PathBuf {
    root.join(".trees").join(sha256)
}

/// The size of the bundle `sha256` unpacked under `root` by an earlier run, if it is as it was
/// unpacked; else none, and what is there is removed (it is unpacked again).
fn intact(root: &Path, sha256: &str) -> Result<Option<u64>> {
    let dir = root.join(sha256);
    let recorded = std::fs::read_to_string(tree_record(root, sha256)).ok();
    let found = tree_digest(&dir).ok();
    if let (Some(recorded), Some((digest, size))) = (recorded, found)
        && recorded.trim() == digest
    {
        return Ok(Some(size));
    }
    tracing::warn!(%sha256, "an unpacked bundle changed since it was unpacked (or has no record): unpacking it again");
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let moved = root.join(format!(".tampered-{sha256}-{}-{n}", std::process::id()));
    std::fs::rename(&dir, &moved)
        .map_err(|e| Error::io(format!("cannot move away {}", dir.display()), e))?;
    let _ = std::fs::remove_dir_all(moved);
    Ok(None)
}

/// The digest of a directory tree — every entry's relative path, kind, permission bits and (for
/// files) content, in name order — and the bytes of its files. A symbolic link or anything but
/// a file or a directory is an error (unpacking makes neither).
fn tree_digest(dir: &Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path, rel: &str, hash: &mut Sha256, size: &mut u64) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let path = format!("{rel}/{}", name.to_string_lossy());
            let meta = std::fs::symlink_metadata(entry.path())?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                hash.update(format!("d {mode:o} {path}\n"));
                walk(&entry.path(), &path, hash, size)?;
            } else if meta.is_file() {
                let mut file = std::fs::File::open(entry.path())?;
                let mut content = Sha256::new();
                *size += std::io::copy(&mut file, &mut content)?;
                hash.update(format!("f {mode:o} {path} {}\n", sha256_hex_of(content)));
            } else {
                return Err(std::io::Error::other(format!(
                    "{path} is neither a file nor a directory"
                )));
            }
        }
        Ok(())
    }
    fn sha256_hex_of(hash: Sha256) -> String {
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
    let (mut hash, mut size) = (Sha256::new(), 0);
    walk(dir, "", &mut hash, &mut size)?;
    Ok((sha256_hex_of(hash), size))
}

/// Unpacks `zip` into `target` (via a temporary directory beside it), records the digest of
/// what was unpacked, and returns its size. Entry names that could escape, symbolic links and
/// more than `limit` bytes are refused.
fn unpack(zip: &[u8], root: &Path, target: &Path, sha256: &str, limit: u64) -> Result<u64> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::io(format!("cannot create bundle dir {}", root.display()), e))?;
    let temp = tempdir_in(root)?;
    let result = extract(zip, &temp, limit);
    match result.and_then(|size| {
        let failed = |e| Error::io(format!("cannot record the bundle {}", target.display()), e);
        let (digest, _) = tree_digest(&temp).map_err(failed)?;
        // The record is written first: a directory in place is never without one (a crash
        // in between leaves a record without a directory, which the next unpack replaces).
        let record = tree_record(root, sha256);
        let partial = record.with_extension("partial");
        std::fs::create_dir_all(root.join(".trees"))
            .and_then(|()| std::fs::write(&partial, &digest))
            .and_then(|()| std::fs::rename(&partial, &record))
            .map_err(failed)?;
        std::fs::rename(&temp, target)
            .map_err(|e| Error::io(format!("cannot move a bundle into {}", target.display()), e))?;
        Ok(size)
    }) {
        Ok(size) => Ok(size),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temp);
            Err(error)
        }
    }
}

fn tempdir_in(root: &Path) -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let temp = root.join(format!(".unpacking-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir(&temp)
        .map_err(|e| Error::io(format!("cannot create {}", temp.display()), e))?;
    Ok(temp)
}

fn extract(zip: &[u8], into: &Path, limit: u64) -> Result<u64> {
    let bad =
        |why: String| Error::BadRequest(format!("the tool's bundle cannot be unpacked: {why}"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| bad(format!("tool.zip is not a readable zip archive ({e})")))?;
    if archive.len() > crate::service::bundle::MAX_ENTRIES {
        return Err(bad(format!("tool.zip holds {} entries, too many", archive.len())));
    }
    let mut budget = limit;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(format!("unreadable entry: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("entry {i} has an unreadable name: {e}")))?
            .into_owned();
        check_name(&name)?;
        if entry.is_symlink() {
            return Err(bad(format!("entry '{}' is a symbolic link", name.escape_default())));
        }
        let path = into.join(&name);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| Error::io("cannot unpack a bundle", e))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot unpack a bundle", e))?;
        }
        // `run` is made executable (zips often lose modes); other files keep theirs.
        let mode = match name.as_str() {
            "run" | "code/run" => 0o755,
            _ => entry.unix_mode().map_or(0o644, |mode| mode & 0o755),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    bad(format!("entry '{}' appears twice", name.escape_default()))
                }
                _ => Error::io("cannot unpack a bundle", e),
            })?;
        let written = std::io::copy(&mut (&mut entry).take(budget.saturating_add(1)), &mut file)
            .map_err(|e| bad(format!("corrupt entry '{}': {e}", name.escape_default())))?;
        if written > budget {
            return Err(Error::TooLarge(format!(
                "the tool's bundle unpacks to more than {limit} bytes, the limit"
            )));
        }
        budget -= written;
    }
    Ok(limit - budget)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in files {
            writer.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    async fn get(cache: &BundleCache, zip: &[u8]) -> Result<Lease> {
        let bytes = Bytes::copy_from_slice(zip);
        cache.acquire(&sha256_hex(zip), async move { Ok(bytes) }).await
    }

    #[tokio::test]
    async fn unpacks_once_evicts_the_least_recently_used_idle_bundle_and_reuses_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BundleCache::new(dir.path().join("b"), 2500, 1 << 20);
        let [one, two, three] =
            [b'1', b'2', b'3'].map(|c| zip_of(&[("run", &[c; 1000][..]), ("code/x", b"x")]));
        let first = get(&cache, &one).await.unwrap();
        assert!(first.dir().join("run").is_file() && first.dir().join("code/x").is_file());
        // Concurrent first calls of one bundle unpack it once.
        let (a, b) = tokio::join!(get(&cache, &two), get(&cache, &two));
        drop((a.unwrap(), b.unwrap()));
        assert_eq!(cache.stats().unpacks, 2);
        // `one` is running: the least recently used idle bundle (`two`) goes instead.
        let third = get(&cache, &three).await.unwrap();
        let stats = cache.stats();
        assert_eq!((stats.evictions, stats.cached), (1, 2), "{stats:?}");
        assert!(first.dir().is_dir() && third.dir().is_dir());
        assert!(!dir.path().join("b").join(sha256_hex(&two)).exists());
        // Unpacked again after its eviction, `run` is executable again.
        drop(third);
        let again = get(&cache, &two).await.unwrap();
        let mode = std::fs::metadata(again.dir().join("run")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111, 0o111);
        drop(again);
        let third = get(&cache, &three).await.unwrap();
        drop((first, third));
        // A new cache (a restart) reuses what is on disk without unpacking.
        let again = BundleCache::new(dir.path().join("b"), 2500, 1 << 20);
        get(&again, &one).await.unwrap();
        assert_eq!(again.stats().unpacks, 0);
    }

    #[tokio::test]
    async fn a_bundle_changed_on_disk_is_unpacked_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("b");
        let zip = zip_of(&[("run", b"#!/bin/sh\necho ok\n"), ("code/lib", b"library")]);
        let unpacked = get(&BundleCache::new(root.clone(), 1 << 20, 1 << 20), &zip).await.unwrap();
        let run = unpacked.dir().join("run");
        drop(unpacked);
        // Untouched: reused as it is.
        let restarted = BundleCache::new(root.clone(), 1 << 20, 1 << 20);
        drop(get(&restarted, &zip).await.unwrap());
        assert_eq!(restarted.stats().unpacks, 0);
        // Each kind of change is found: content, a new file, a mode.
        let changes: [&dyn Fn(); 3] = [
            &|| std::fs::write(&run, b"#!/bin/sh\necho pwned\n").unwrap(),
            &|| std::fs::write(run.with_file_name("extra"), b"x").unwrap(),
            &|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap()
            },
        ];
        for change in changes {
            change();
            let restarted = BundleCache::new(root.clone(), 1 << 20, 1 << 20);
            let lease = get(&restarted, &zip).await.unwrap();
            assert_eq!(restarted.stats().unpacks, 1, "a changed directory is unpacked again");
            assert_eq!(std::fs::read(lease.dir().join("run")).unwrap(), b"#!/bin/sh\necho ok\n");
            assert!(!lease.dir().join("extra").exists());
        }
        // A directory without a record (a crash before it was written) is not trusted either.
        std::fs::remove_file(root.join(".trees").join(sha256_hex(&zip))).unwrap();
        let restarted = BundleCache::new(root.clone(), 1 << 20, 1 << 20);
        drop(get(&restarted, &zip).await.unwrap());
        assert_eq!(restarted.stats().unpacks, 1);
    }

    #[tokio::test]
    async fn bad_archives_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("b");
        let cache = BundleCache::new(root.clone(), 1 << 30, 4096);
        let wrong = Bytes::from_static(b"other bytes");
        let refused = cache.acquire(&sha256_hex(b"expected"), async move { Ok(wrong) }).await;
        assert_eq!(refused.unwrap_err().status(), 502);
        for (zip, status) in [
            (zip_of(&[("../escape", b"x")]), 400),
            (zip_of(&[("/abs", b"x")]), 400),
            (zip_of(&[("big", &[0u8; 5000][..])]), 413),
            (b"not a zip".to_vec(), 400),
        ] {
            let error = get(&cache, &zip).await.unwrap_err();
            assert_eq!(error.status(), status, "{error}");
        }
        let mut symlink = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        symlink
            .add_symlink("run", "/etc/passwd", zip::write::SimpleFileOptions::default())
            .unwrap();
        let symlink = symlink.finish().unwrap().into_inner();
        assert_eq!(get(&cache, &symlink).await.unwrap_err().status(), 400);
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(!dir.path().join("escape").exists());
    }
}
