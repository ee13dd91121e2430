//! `fibra::fs::OpenOptions`: std's builder, opening on the blocking pool.

use std::io;
use std::path::Path;

use super::route;
use super::File;

/// How to open a file: [`std::fs::OpenOptions`]'s builder, whose [`open`](OpenOptions::open)
/// runs on the blocking pool (path lookup may wait for the disk) and returns a
/// [`fibra::fs::File`](File). Unix extras (`mode`, `custom_flags`) come through
/// [`std::os::unix::fs::OpenOptionsExt`].
///
/// ```
/// # fibra::run(|| {
/// use std::io::Write;
/// use std::os::unix::fs::OpenOptionsExt;
/// let path = std::env::temp_dir().join(format!("fibra-doc-oo-{}", std::process::id()));
/// let mut f = fibra::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
/// f.write_all(b"x")?;
/// assert!(fibra::fs::OpenOptions::new().write(true).create_new(true).open(&path).is_err());
/// # fibra::fs::remove_file(&path)?;
/// # std::io::Result::Ok(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions(std::fs::OpenOptions);

impl OpenOptions {
    /// All options off (as `std::fs::OpenOptions::new`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// // Nothing to open for: as with std, this is an error.
    /// assert!(fibra::fs::OpenOptions::new().open("/proc/self/status").is_err());
    /// # });
    /// ```
    #[must_use]
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Open for reading.
    ///
    /// ```
    /// # fibra::run(|| {
    /// assert!(fibra::fs::OpenOptions::new().read(true).open("/proc/self/status").is_ok());
    /// # });
    /// ```
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Open for writing.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-oow-{}", std::process::id()));
    /// let f = fibra::fs::OpenOptions::new().write(true).create(true).open(&path).unwrap();
    /// f.write_at(b"w", 0).unwrap();
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Open for appending: every write goes to the end.
    ///
    /// ```
    /// # fibra::run(|| {
    /// use std::io::Write;
    /// let path = std::env::temp_dir().join(format!("fibra-doc-ooa-{}", std::process::id()));
    /// fibra::fs::write(&path, b"ab").unwrap();
    /// let mut f = fibra::fs::OpenOptions::new().append(true).open(&path).unwrap();
    /// f.write_all(b"cd").unwrap();
    /// assert_eq!(fibra::fs::read(&path).unwrap(), b"abcd");
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncate an existing file to 0 bytes (needs write access).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-oot-{}", std::process::id()));
    /// fibra::fs::write(&path, b"old").unwrap();
    /// fibra::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    /// assert_eq!(fibra::fs::read(&path).unwrap(), b"");
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Create the file if it does not exist (needs write or append access).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-ooc-{}", std::process::id()));
    /// fibra::fs::OpenOptions::new().write(true).create(true).open(&path).unwrap();
    /// assert!(fibra::fs::metadata(&path).unwrap().is_file());
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Create the file, failing if it exists (`O_CREAT | O_EXCL`).
    ///
    /// ```
    /// # fibra::run(|| {
    /// let path = std::env::temp_dir().join(format!("fibra-doc-oocn-{}", std::process::id()));
    /// let mut o = fibra::fs::OpenOptions::new();
    /// o.write(true).create_new(true);
    /// assert!(o.open(&path).is_ok());
    /// assert_eq!(o.open(&path).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    /// # fibra::fs::remove_file(&path).unwrap();
    /// # });
    /// ```
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// Opens `path` with these options, on the blocking pool.
    ///
    /// # Errors
    /// As `std::fs::OpenOptions::open`.
    ///
    /// ```
    /// # fibra::run(|| {
    /// let f = fibra::fs::OpenOptions::new().read(true).open("/proc/self/status").unwrap();
    /// assert!(f.metadata().unwrap().is_file());
    /// # });
    /// ```
    pub fn open<P: AsRef<Path>>(&self, path: P) -> io::Result<File> {
        let path = path.as_ref();
        route::pool(|| self.0.open(path)).map(File::from_std)
    }
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl std::os::unix::fs::OpenOptionsExt for OpenOptions {
    fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.0.mode(mode);
        self
    }

    fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.0.custom_flags(flags);
        self
    }
}

impl From<std::fs::OpenOptions> for OpenOptions {
    fn from(o: std::fs::OpenOptions) -> OpenOptions {
        OpenOptions(o)
    }
}
