//! The floor a durable commit stands on: 2 KiB appended + `fdatasync`, and 2 KiB written
//! over a preallocated file in place + `fdatasync` (no size change, so no metadata to
//! journal). Records per second over `count` iterations.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

const RECORD_BYTES: usize = 2048;

pub fn append_fdatasync(dir: &Path, count: u64) -> std::io::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("append.bin"))?;
    let record = [0x5a_u8; RECORD_BYTES];
    let started = Instant::now();
    for _ in 0..count {
        file.write_all(&record)?;
        file.sync_data()?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

pub fn overwrite_fdatasync(dir: &Path, count: u64) -> std::io::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("overwrite.bin"))?;
    let zeros = vec![0u8; RECORD_BYTES * count as usize];
    file.write_all_at(&zeros, 0)?;
    file.sync_all()?;
    let record = [0xa5_u8; RECORD_BYTES];
    let started = Instant::now();
    for index in 0..count {
        file.write_all_at(&record, index * RECORD_BYTES as u64)?;
        file.sync_data()?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
