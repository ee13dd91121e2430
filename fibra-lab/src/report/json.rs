//! `--json FILE`: the whole report, machine-readable.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::Report;

pub fn write(path: &Path, report: &Report) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    serde_json::to_writer_pretty(&mut out, report)?;
    out.write_all(b"\n")?;
    out.flush()
}
