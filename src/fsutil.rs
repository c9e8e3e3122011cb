//! Crash-safe file writes: nothing already saved is lost if power fails mid-write.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `data` to `path` through a temp file in the same directory: write, fsync,
/// rename over the old file, fsync the directory. A reader sees the old file or the new
/// one, never a torn mix; a failure leaves the old file and no temp file behind.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(data)?;
    file.commit()
}

/// A file written as [`write_atomic`] writes one, for data written a piece at a time
/// (too large to hold in memory): it appears at its path on [`AtomicFile::commit`];
/// dropped before that, it leaves the old file and no temp file behind.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once committed.
    file: Option<BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Starts `path` under a temp name in its directory (removing temp files a killed
    /// writer left there).
    pub fn create(path: &Path) -> anyhow::Result<AtomicFile> {
        let dir = dir_of(path);
        let name = path
            .file_name()
            .with_context(|| format!("{}: not a file path", path.display()))?;
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        // A temp file left by a process killed mid-write (power cut, kill -9) is garbage.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let tmp = dir.join(format!("{prefix}{}", std::process::id()));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(BufWriter::new(file)),
        })
    }

    /// Appends `data`.
    pub fn write_all(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let file = self.file.as_mut().expect("not committed yet");
        file.write_all(data)
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }

    /// Flushes, fsyncs and renames the file to its path, then fsyncs the directory.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let file = self.file.take().expect("committed once");
        let result = (|| -> std::io::Result<()> {
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&self.tmp, &self.path)?;
            if let Ok(d) = std::fs::File::open(dir_of(&self.path)) {
                // Directory fsync makes the rename itself durable; some filesystems refuse it.
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result.with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The directory a file path is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_temp_file_left_by_a_killed_writer_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(dir.path().join(".x.bin.tmp-999999"), b"torn").unwrap();
        write_atomic(&p, b"whole").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_written_in_pieces_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"new ").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        f.write_all(b"contents").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        // Dropped before commit: the old file stays, and no temp file is left.
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"torn").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing_dir = dir.path().join("no/such/dir/x.bin");
        assert!(write_atomic(&missing_dir, b"x").is_err());
    }
}
