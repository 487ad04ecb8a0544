//! The open-files limit. Every client connection is a file descriptor of this process, and a
//! common soft default (1024) is far below the 6000 or 12 000 connections a run opens.

/// Descriptors kept free for everything that is not a client connection: the runtime, stdio,
/// files written, connections of the setup and the check phases.
pub const SPARE_DESCRIPTORS: u64 = 256;

/// Raise the soft open-files limit to the hard limit, and check that it leaves room for
/// `connections` client connections. Returns the soft limit now in force.
pub fn raise_open_files(connections: usize) -> Result<u64, String> {
    let limit = flashstock_host::raise_open_files_limit()
        .map_err(|e| format!("getrlimit(RLIMIT_NOFILE) failed: {e}"))?;
    let needed = connections as u64 + SPARE_DESCRIPTORS;
    if limit.soft < needed {
        return Err(format!(
            "{connections} connections need about {needed} open files, but this process may open \
             only {} (hard limit {}); raise the hard limit (e.g. `ulimit -Hn {needed}` as root, or \
             LimitNOFILE= in a systemd unit) or use fewer connections",
            limit.soft, limit.hard
        ));
    }
    Ok(limit.soft)
}
