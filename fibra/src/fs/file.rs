//! `fibra::fs::File`: `std::fs::File` whose reads and writes park the fiber, not the worker.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::route::{self, Kind};
use super::{Metadata, OpenOptions, Permissions};

/// An open file: [`std::fs::File`]'s API, where a read that misses the page cache (and any
/// write or sync that would wait) parks only the calling fiber (see [the module
/// docs](crate::fs) for the path each operation takes). On a plain thread it behaves exactly
/// as `std::fs::File`.
///
/// Like std's, [`Read`], [`Write`] and [`Seek`] are implemented for `&File` too, and use the
/// file position the kernel keeps for the open file; [`File::read_at`] and
/// [`File::write_at`] leave it alone.
///
/// ```
/// # fibra::run(|| {
/// use std::io::{Read, Write};
/// let path = std::env::temp_dir().join(format!("fibra-doc-file-{}", std::process::id()));
/// let mut f = fibra::fs::File::create(&path)?;
/// f.write_all(b"hello")?;
/// let mut s = String::new();
/// fibra::fs::File::open(&path)?.read_to_string(&mut s)?;
/// assert_eq!(s, "hello");
/// # fibra::fs::remove_file(&path)?;
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
pub struct File {
    inner: std::fs::File,
    kind: Kind,
}

impl File {
    /// Opens `path` read-only (`std::fs::File::open`), on the blocking pool: path lookup may
    /// wait for the disk.
    ///
    /// # Errors
    /// As `std::fs::File::open`: `NotFound`, `PermissionDenied`, …
    ///
    /// ```
    /// # fibra::run(|| {
    /// let f = fibra::fs::File::open("/proc/self/status").unwrap();
    /// assert!(f.metadata().unwrap().is_file());
    /// assert!(fibra::fs::File::open("/no/such/file").is_err());
    /// # });
    /// ```
    pub fn open<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens `path` for writing, creating it or truncating it (`std::fs::File::create`).
    ///
    /// # Errors
    /// As `std::fs::File::create`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-create-{}", std::process::id()));
    /// let f = fibra::fs::File::create(&path).unwrap();
    /// assert_eq!(f.metadata().unwrap().len(), 0);
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn create<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// A new [`OpenOptions`], all options off (`std::fs::File::options`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-options-{}", std::process::id()));
    /// let f = fibra::fs::File::options().append(true).create(true).open(&path).unwrap();
    /// drop(f);
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    #[must_use]
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Wraps an open `std::fs::File`, keeping its file position.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::io::Read;
    /// let std_file = std::fs::File::open("/proc/self/status").unwrap();
    /// let mut f = fibra::fs::File::from_std(std_file);
    /// let mut s = String::new();
    /// f.read_to_string(&mut s).unwrap();
    /// assert!(s.contains("Name:"));
    /// # });
    /// ```
    #[must_use]
    pub fn from_std(file: std::fs::File) -> File {
        File {
            inner: file,
            kind: Kind::default(),
        }
    }

    /// The `std::fs::File` inside, with its file position.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let f = fibra::fs::File::open("/proc/self/status").unwrap();
    /// let std_file: std::fs::File = f.into_std();
    /// assert!(std_file.metadata().unwrap().is_file());
    /// # });
    /// ```
    #[must_use]
    pub fn into_std(self) -> std::fs::File {
        self.inner
    }

    /// Reads up to `buf.len()` bytes at `offset` without moving the file position, as
    /// `std::os::unix::fs::FileExt::read_at`; returns how many (0 at the end of the file).
    /// A page-cache hit costs one syscall on the worker; a miss parks the fiber.
    ///
    /// # Errors
    /// As `pread(2)`, or an error if the runtime shuts down while the fiber waits.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-read-at-{}", std::process::id()));
    /// fibra::fs::write(&path, b"0123456789").unwrap();
    /// let f = fibra::fs::File::open(&path).unwrap();
    /// let mut buf = [0; 4];
    /// assert_eq!(f.read_at(&mut buf, 3).unwrap(), 4);
    /// assert_eq!(&buf, b"3456");
    /// assert_eq!(f.read_at(&mut buf, 10).unwrap(), 0);
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        route::read(&self.inner, &self.kind, buf, Some(offset))
    }

    /// Fills `buf` from `offset` (`FileExt::read_exact_at`).
    ///
    /// # Errors
    /// `UnexpectedEof` if the file ends first; otherwise as [`File::read_at`].
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-rea-{}", std::process::id()));
    /// fibra::fs::write(&path, b"0123456789").unwrap();
    /// let f = fibra::fs::File::open(&path).unwrap();
    /// let mut buf = [0; 4];
    /// f.read_exact_at(&mut buf, 6).unwrap();
    /// assert_eq!(&buf, b"6789");
    /// assert!(f.read_exact_at(&mut buf, 7).is_err());
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes up to `buf.len()` bytes at `offset` without moving the file position
    /// (`FileExt::write_at`; in append mode Linux appends instead, as with `pwrite`).
    ///
    /// # Errors
    /// As `pwrite(2)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-write-at-{}", std::process::id()));
    /// let f = fibra::fs::File::create(&path).unwrap();
    /// f.write_at(b"world", 6).unwrap();
    /// f.write_at(b"hello ", 0).unwrap();
    /// assert_eq!(fibra::fs::read(&path).unwrap(), b"hello world");
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        route::write(&self.inner, &self.kind, buf, Some(offset))
    }

    /// Writes all of `buf` at `offset` (`FileExt::write_all_at`).
    ///
    /// # Errors
    /// `WriteZero` if the file takes no more; otherwise as [`File::write_at`].
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-waa-{}", std::process::id()));
    /// let f = fibra::fs::File::create(&path).unwrap();
    /// f.write_all_at(b"abc", 2).unwrap();
    /// assert_eq!(fibra::fs::read(&path).unwrap(), b"\0\0abc");
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "failed to write whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Flushes data and metadata to the device (`fsync`), through the worker's ring (or the
    /// pool where there is none).
    ///
    /// # Errors
    /// As `fsync(2)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::io::Write;
    /// let path = std::env::temp_dir().join(format!("fibra-doc-sync-{}", std::process::id()));
    /// let mut f = fibra::fs::File::create(&path).unwrap();
    /// f.write_all(b"durable").unwrap();
    /// f.sync_all().unwrap();
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn sync_all(&self) -> io::Result<()> {
        route::sync(&self.inner, false)
    }

    /// Flushes data, and only the metadata needed to read it back (`fdatasync`).
    ///
    /// # Errors
    /// As `fdatasync(2)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-sd-{}", std::process::id()));
    /// let f = fibra::fs::File::create(&path).unwrap();
    /// f.write_at(b"data", 0).unwrap();
    /// f.sync_data().unwrap();
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn sync_data(&self) -> io::Result<()> {
        route::sync(&self.inner, true)
    }

    /// Truncates or extends the file to `size` bytes (`std::fs::File::set_len`), on the pool.
    ///
    /// # Errors
    /// As `ftruncate(2)`; `InvalidInput` if the file is not open for writing.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-setlen-{}", std::process::id()));
    /// let f = fibra::fs::File::create(&path).unwrap();
    /// f.set_len(1000).unwrap();
    /// assert_eq!(f.metadata().unwrap().len(), 1000);
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        route::pool(|| self.inner.set_len(size))
    }

    /// The file's metadata (`std::fs::File::metadata`), on the pool.
    ///
    /// # Errors
    /// As `fstat(2)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let f = fibra::fs::File::open("/proc/self/status").unwrap();
    /// assert!(!f.metadata().unwrap().is_dir());
    /// # });
    /// ```
    pub fn metadata(&self) -> io::Result<Metadata> {
        route::pool(|| self.inner.metadata())
    }

    /// Changes the file's permissions (`std::fs::File::set_permissions`), on the pool.
    ///
    /// # Errors
    /// As `fchmod(2)`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-perm-{}", std::process::id()));
    /// let f = fibra::fs::File::create(&path).unwrap();
    /// let mut p = f.metadata().unwrap().permissions();
    /// p.set_readonly(true);
    /// f.set_permissions(p).unwrap();
    /// assert!(f.metadata().unwrap().permissions().readonly());
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn set_permissions(&self, perm: Permissions) -> io::Result<()> {
        route::pool(|| self.inner.set_permissions(perm))
    }

    /// A second handle to the same open file, sharing its position (`dup`; no blocking).
    ///
    /// # Errors
    /// As `fcntl(F_DUPFD_CLOEXEC)`: `EMFILE` when out of descriptors.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::io::Read;
    /// let mut a = fibra::fs::File::open("/proc/self/status").unwrap();
    /// let b = a.try_clone().unwrap();
    /// let mut s = String::new();
    /// a.read_to_string(&mut s).unwrap();
    /// assert!(b.metadata().unwrap().is_file());
    /// # });
    /// ```
    pub fn try_clone(&self) -> io::Result<File> {
        Ok(File::from_std(self.inner.try_clone()?))
    }
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        route::read(&self.inner, &self.kind, buf, None)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let buf = bufs
            .iter_mut()
            .find(|b| !b.is_empty())
            .map_or(&mut [][..], |b| &mut **b);
        self.read(buf)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        // Reserve what is left of the file, as std does, so the reads are few and large.
        let left = (|| {
            let len = self.inner.metadata().ok()?.len();
            let pos = (&self.inner).stream_position().ok()?;
            usize::try_from(len.saturating_sub(pos)).ok()
        })();
        if let Some(left) = left {
            buf.try_reserve(left)
                .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        }
        default_read_to_end(self, buf)
    }
}

/// `Read::read_to_end`'s loop, reading into the spare capacity (zeroed first: ours is safe code).
fn default_read_to_end(r: &mut &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    let start = buf.len();
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(32 * 1024);
        }
        let len = buf.len();
        buf.resize(buf.capacity(), 0);
        match r.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(len - start);
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (&*self).read_to_end(buf)
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        route::write(&self.inner, &self.kind, buf, None)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // nothing is buffered in user space
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for &File {
    /// `lseek`: moves the kernel's file position; never waits for the disk.
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&self.inner).seek(pos)
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self).seek(pos)
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl From<std::fs::File> for File {
    fn from(file: std::fs::File) -> File {
        File::from_std(file)
    }
}

impl From<File> for std::fs::File {
    fn from(file: File) -> std::fs::File {
        file.into_std()
    }
}

impl From<File> for OwnedFd {
    fn from(file: File) -> OwnedFd {
        file.inner.into()
    }
}

impl From<OwnedFd> for File {
    fn from(fd: OwnedFd) -> File {
        File::from_std(fd.into())
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl IntoRawFd for File {
    fn into_raw_fd(self) -> RawFd {
        self.inner.into_raw_fd()
    }
}

impl FromRawFd for File {
    /// # Safety
    /// As `std::fs::File::from_raw_fd`: `fd` is open and owned by nobody else.
    unsafe fn from_raw_fd(fd: RawFd) -> File {
        // SAFETY: the caller's contract is std's, passed on unchanged.
        File::from_std(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}
