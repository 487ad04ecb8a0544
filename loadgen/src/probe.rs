//! The floor probe: what the machine itself costs, to read the other figures against.
//!
//! - One **fsynced 4 KiB write** on the data disk (`pwrite` then `fdatasync`, median of many):
//!   a confirmed purchase needs at least one on a majority of voters.
//! - One **loopback TCP round trip** (one byte each way, Nagle off, median of many): every
//!   request crosses at least two (client to gateway, gateway to leader) and Raft adds one more.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Writes and round trips per probe.
pub const FSYNC_SAMPLES: usize = 200;
pub const RTT_SAMPLES: usize = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// Median of one 4 KiB write plus `fdatasync`, microseconds.
    pub fsync_4k_p50_us: f64,
    pub fsync_4k_p99_us: f64,
    /// Median loopback TCP round trip, microseconds.
    pub loopback_rtt_p50_us: f64,
    pub loopback_rtt_p99_us: f64,
    /// Where the fsync probe wrote.
    pub disk_dir: String,
}

fn percentile_us(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort_unstable();
    let at = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[at].as_secs_f64() * 1e6
}

/// Probe the disk under `dir` and the loopback interface. Blocking: run it off the runtime.
pub fn probe(dir: &Path) -> std::io::Result<Floor> {
    let mut fsyncs = fsync_samples(dir)?;
    let mut rtts = rtt_samples()?;
    Ok(Floor {
        fsync_4k_p50_us: percentile_us(&mut fsyncs, 0.5),
        fsync_4k_p99_us: percentile_us(&mut fsyncs, 0.99),
        loopback_rtt_p50_us: percentile_us(&mut rtts, 0.5),
        loopback_rtt_p99_us: percentile_us(&mut rtts, 0.99),
        disk_dir: dir.display().to_string(),
    })
}

fn fsync_samples(dir: &Path) -> std::io::Result<Vec<Duration>> {
    let file = tempfile::tempfile_in(dir)?;
    let block = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(FSYNC_SAMPLES);
    for i in 0..FSYNC_SAMPLES {
        let began = Instant::now();
        // Appends, like a write-ahead log.
        file.write_all_at(&block, (i * block.len()) as u64)?;
        file.sync_data()?;
        samples.push(began.elapsed());
    }
    Ok(samples)
}

fn rtt_samples() -> std::io::Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        for _ in 0..RTT_SAMPLES {
            stream.read_exact(&mut byte)?;
            stream.write_all(&byte)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut byte = [1u8; 1];
    let mut samples = Vec::with_capacity(RTT_SAMPLES);
    for _ in 0..RTT_SAMPLES {
        let began = Instant::now();
        stream.write_all(&byte)?;
        stream.read_exact(&mut byte)?;
        samples.push(began.elapsed());
    }
    echo.join()
        .map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_something() {
        let dir = tempfile::tempdir().expect("temp dir");
        let floor = probe(dir.path()).expect("probe");
        assert!(floor.fsync_4k_p50_us > 0.0);
        assert!(floor.loopback_rtt_p50_us > 0.0);
    }
}
