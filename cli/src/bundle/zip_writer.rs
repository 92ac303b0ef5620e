//! The deterministic bundle zip, compressed on every core.
//!
//! Zip entries are compressed independently, so each one is prepared (read, checked for whether
//! it compresses, deflated or stored) on a pool of worker threads while this thread appends the
//! finished entries strictly in the given (sorted) order. The bytes of the zip therefore depend
//! only on the entries' paths, modes and contents — never on thread timing or the number of
//! cores — and the same inputs give the same sha256 on any machine.
//!
//! An entry that does not compress (random data, images, archives) is stored: deflating it
//! costs as much CPU as deflating text and saves nothing. The choice is made from the entry's
//! own bytes (its first [`PROBE_BYTES`]), so it is as deterministic as the rest.
//!
//! A stop (Ctrl-C, SIGTERM) ends the writing soon: every worker checks [`Cancel`] before each
//! entry, while reading it and between [`CHUNK_BYTES`] of compressing it, and the writer before
//! each entry it appends.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use zip::write::{SimpleFileOptions, ZipFileBuilder};
use zip::{CompressionMethod, DateTime, PreparedZipFile, ZipWriter};

use super::assets::{BundleEntry, EntrySource};
use super::cancel::Cancel;

/// How much of an entry decides whether it is deflated: the first 16 KiB, deflated at the
/// fastest level. Random data does not shrink at all, text shrinks to well under half.
const PROBE_BYTES: usize = 16 * 1024;

/// An entry is stored unless deflating its probe saves at least this share (in percent).
const MIN_SAVING_PERCENT: usize = 10;

/// How much of an entry is compressed between two checks for a stop.
const CHUNK_BYTES: usize = 1024 * 1024;

/// The most bytes (of entries' sizes) prepared ahead of the writer: bounds memory to about this
/// much plus one large entry, however many entries a bundle has.
const IN_FLIGHT_BYTES: u64 = 64 * 1024 * 1024;

/// A bundle whose entries add up to no more than this is compressed on the calling thread:
/// starting and joining workers took longer than its entries do (the first build of a project
/// of 1,000 small tasks started 2,000 threads).
const INLINE_BYTES: u64 = 1024 * 1024;
// A lone thread must never wait for room in flight: nobody else would make it.
const _: () = assert!(INLINE_BYTES <= IN_FLIGHT_BYTES);

/// Writes the zip of `entries` to `file`: entries in the given (sorted) order, every timestamp
/// 1980-01-01, mode 0755 for executables and 0644 for the rest, deflated when that helps and
/// stored when it does not. Gives up with an error carrying [`super::cancel::Cancelled`] once
/// `cancel` says so.
pub fn write_zip(file: &File, entries: &[BundleEntry], cancel: &Cancel) -> io::Result<()> {
    let mut zip = ZipWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let workers = if total <= INLINE_BYTES {
        0
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(entries.len())
            .max(1)
    };
    let pipeline = Pipeline {
        state: Mutex::new(PipelineState::default()),
        changed: Condvar::new(),
        entries,
        cancel,
    };
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| pipeline.work());
        }
        if workers == 0 {
            // Everything fits in flight: prepared here, in order, then appended.
            pipeline.work();
        }
        let written = pipeline.append_in_order(&mut zip);
        // Whatever happened, the workers must stop taking entries before the scope joins them.
        pipeline.lock().stopped = true;
        pipeline.changed.notify_all();
        written
    })?;
    let mut out = zip.finish().map_err(io::Error::other)?;
    out.flush()?;
    Ok(())
}

/// Entries handed from the workers to the writer, by index.
struct Pipeline<'a> {
    state: Mutex<PipelineState>,
    changed: Condvar,
    entries: &'a [BundleEntry],
    cancel: &'a Cancel,
}

#[derive(Default)]
struct PipelineState {
    /// The next entry a worker takes.
    next: usize,
    /// How many entries the writer has appended.
    written: usize,
    /// Sizes of the entries taken but not yet appended.
    in_flight: u64,
    prepared: BTreeMap<usize, io::Result<PreparedZipFile>>,
    /// Set when the writer stops (done or failed): workers take no more entries.
    stopped: bool,
}

impl Pipeline<'_> {
    fn lock(&self) -> MutexGuard<'_, PipelineState> {
        // A worker that panicked while holding the lock leaves consistent state behind (each
        // update is a few assignments); the panic itself reaches the caller through the scope.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, guard: MutexGuard<'g, PipelineState>) -> MutexGuard<'g, PipelineState> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker: takes the next entry while the bytes in flight allow, prepares it, hands it
    /// over.
    fn work(&self) {
        loop {
            let index = {
                let mut state = self.lock();
                loop {
                    if state.stopped || state.next >= self.entries.len() {
                        return;
                    }
                    let index = state.next;
                    let size = self.entries[index].size;
                    // The entry the writer waits for is always taken, however large.
                    if index == state.written || state.in_flight + size <= IN_FLIGHT_BYTES {
                        state.next += 1;
                        state.in_flight += size;
                        break index;
                    }
                    state = self.wait(state);
                }
            };
            let prepared = prepare(&self.entries[index], self.cancel);
            self.lock().prepared.insert(index, prepared);
            self.changed.notify_all();
        }
    }

    /// Appends every entry, in order, as the workers finish them.
    fn append_in_order<W: Write + io::Seek>(&self, zip: &mut ZipWriter<W>) -> io::Result<()> {
        for (index, entry) in self.entries.iter().enumerate() {
            self.cancel.check()?;
            let prepared = {
                let mut state = self.lock();
                loop {
                    if let Some(prepared) = state.prepared.remove(&index) {
                        break prepared;
                    }
                    state = self.wait(state);
                }
            }?;
            zip.add_prepared_file(prepared).map_err(io::Error::other)?;
            let mut state = self.lock();
            state.written = index + 1;
            state.in_flight -= entry.size;
            drop(state);
            self.changed.notify_all();
        }
        Ok(())
    }
}

/// One entry read, deflated or stored, with its CRC: everything but its place in the zip.
fn prepare(entry: &BundleEntry, cancel: &Cancel) -> io::Result<PreparedZipFile> {
    cancel.check()?;
    let read;
    let data: &[u8] = match &entry.source {
        EntrySource::Bytes(bytes) => bytes,
        EntrySource::File(path) => {
            let cannot_read = |e: io::Error| match Cancel::reason_of(&e) {
                Some(_) => e,
                None => io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display())),
            };
            let mut buffer = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
            let file = File::open(path).map_err(cannot_read)?;
            io::Read::read_to_end(&mut cancel.reader(file), &mut buffer).map_err(cannot_read)?;
            read = buffer;
            &read
        }
    };
    let options = |method| {
        SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(DateTime::default())
            .unix_permissions(if entry.executable { 0o755 } else { 0o644 })
            .large_file(data.len() as u64 >= u64::from(u32::MAX))
    };
    let build = |method| -> io::Result<PreparedZipFile> {
        let mut builder =
            ZipFileBuilder::new(&entry.path, options(method)).map_err(io::Error::other)?;
        for chunk in data.chunks(CHUNK_BYTES) {
            cancel.check()?;
            builder.write_all(chunk)?;
        }
        builder.finish().map_err(io::Error::other)
    };
    if data.is_empty() {
        return build(CompressionMethod::Stored);
    }
    if data.len() <= PROBE_BYTES {
        // Small enough that the real deflate is the probe.
        let deflated = build(CompressionMethod::Deflated)?;
        return if saves_enough(deflated.compressed_size(), data.len()) {
            Ok(deflated)
        } else {
            build(CompressionMethod::Stored)
        };
    }
    let probe = &data[..PROBE_BYTES];
    let mut builder = ZipFileBuilder::new(
        "probe",
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(1)),
    )
    .map_err(io::Error::other)?;
    builder.write_all(probe)?;
    let probed = builder.finish().map_err(io::Error::other)?;
    if saves_enough(probed.compressed_size(), probe.len()) {
        build(CompressionMethod::Deflated)
    } else {
        build(CompressionMethod::Stored)
    }
}

fn saves_enough(compressed: u64, original: usize) -> bool {
    let original = original as u64;
    compressed * 100 <= original * (100 - MIN_SAVING_PERCENT as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entry(path: &str, data: Vec<u8>, executable: bool) -> BundleEntry {
        BundleEntry {
            path: path.into(),
            size: data.len() as u64,
            source: EntrySource::Bytes(data),
            executable,
            stamp: None,
        }
    }

    /// Bytes that do not compress, the same on every machine (a xorshift stream).
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let line = b"2026-12-06 deploy task=migrate status=ok took=12ms\n";
        line.iter().copied().cycle().take(len).collect()
    }

    fn zip_of(entries: &[BundleEntry]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.zip");
        write_zip(&File::create(&path).unwrap(), entries, &Cancel::default()).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn random_data_is_stored_text_is_deflated_and_both_read_back() {
        let entries = vec![
            entry("a/empty", Vec::new(), false),
            entry("a/noise.bin", noise(200_000, 7), false),
            entry("a/small-noise.bin", noise(500, 9), false),
            entry("b/log.txt", text(300_000), false),
            entry("b/run.sh", b"#!/bin/sh\necho hi\n".repeat(20), true),
        ];
        let bytes = zip_of(&entries);
        let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        let methods: Vec<_> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().compression())
            .collect();
        assert_eq!(
            methods,
            [
                CompressionMethod::Stored,
                CompressionMethod::Stored,
                CompressionMethod::Stored,
                CompressionMethod::Deflated,
                CompressionMethod::Deflated,
            ]
        );
        for (i, expected) in entries.iter().enumerate() {
            let mut file = archive.by_index(i).unwrap();
            assert_eq!(String::from_utf8_lossy(file.name_raw()), expected.path);
            let mut got = Vec::new();
            file.read_to_end(&mut got).unwrap();
            let EntrySource::Bytes(want) = &expected.source else {
                unreachable!()
            };
            assert_eq!(&got, want, "{}", expected.path);
            let mode = file.unix_mode().unwrap() & 0o777;
            assert_eq!(mode, if expected.executable { 0o755 } else { 0o644 });
        }
    }

    /// Entries finish on the workers in any order; the zip must not show it. Many entries of
    /// very different sizes (and more bytes than are kept in flight) make a reordering likely
    /// if the writer did not put them back in order.
    #[test]
    fn the_zip_is_the_same_whatever_order_the_workers_finish_in() {
        let entries: Vec<_> = (0..120)
            .map(|i| {
                let len = if i % 7 == 0 {
                    3_000_000
                } else {
                    1_000 + i * 10
                };
                let data = if i % 2 == 0 {
                    noise(len, i as u64)
                } else {
                    text(len)
                };
                entry(&format!("f{i:03}"), data, i % 3 == 0)
            })
            .collect();
        let first = zip_of(&entries);
        for _ in 0..3 {
            assert!(
                zip_of(&entries) == first,
                "the same entries gave another zip"
            );
        }
        let mut archive = zip::ZipArchive::new(io::Cursor::new(first)).unwrap();
        let names: Vec<_> = (0..archive.len())
            .map(|i| String::from_utf8_lossy(archive.by_index(i).unwrap().name_raw()).into_owned())
            .collect();
        let expected: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn an_unreadable_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.txt");
        let entries = vec![BundleEntry {
            path: "gone.txt".into(),
            source: EntrySource::File(missing),
            executable: false,
            size: 3,
            stamp: None,
        }];
        let err = write_zip(
            &File::create(dir.path().join("b.zip")).unwrap(),
            &entries,
            &Cancel::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("gone.txt"), "{err}");
    }
}
