//! Returning freed memory to the operating system.
//!
//! glibc's allocator keeps what a process frees inside its heaps (one per thread arena) for
//! reuse, and gives back to the operating system only the free memory at the top of a heap. A
//! node that served a burst (a flash sale, thousands of connections) keeps the pages of
//! everything it freed meanwhile as resident memory: measured on a gateway after a flash sale,
//! carts and 6000 connections of the standard mix, 198 to 220 MiB resident, of which
//! `malloc_trim` gave back about half (to 96 to 100 MiB). See `docs/BENCHMARKS.md`, "Memory
//! given back".

/// Give every whole page that the allocator holds free back to the operating system; returns
/// whether any was. A no-op (returning `false`) where the C library is not glibc.
pub fn return_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the allocator's own locks and only releases free memory.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_goes_back() {
        fn resident_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // Many small blocks (below the size glibc maps on its own), touched, then freed: their
        // pages stay resident until trimmed. One block in 64 is kept alive, so that the freed ones
        // cannot merge into the top of the heap and leave by themselves.
        let blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 1000]).collect();
        let (kept, freed): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 64 == 0);
        drop(freed);
        let before = resident_kib();
        assert!(return_free_memory(), "there was free memory to give back");
        let after = resident_kib();
        assert!(
            after + 100_000 < before,
            "about 190 MB freed, but resident memory went only from {before} KiB to {after} KiB"
        );
        drop(kept);
    }
}
