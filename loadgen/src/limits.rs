//! The open-files limit. Every client connection is a file descriptor of this process, and a
//! common soft default (1024) is far below the 6000 or 12 000 connections a run opens.

/// Descriptors kept free for everything that is not a client connection: the runtime, stdio,
/// files written, connections of the setup and the check phases.
pub const SPARE_DESCRIPTORS: u64 = 256;

/// Raise the soft open-files limit to the hard limit, and check that it leaves room for
/// `connections` client connections. Returns the soft limit now in force.
pub fn raise_open_files(connections: usize) -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let needed = connections as u64 + SPARE_DESCRIPTORS;
    if limit.rlim_cur < needed {
        return Err(format!(
            "{connections} connections need about {needed} open files, but this process may open \
             only {} (hard limit {}); raise the hard limit (e.g. `ulimit -Hn {needed}` as root, or \
             LimitNOFILE= in a systemd unit) or use fewer connections",
            limit.rlim_cur, limit.rlim_max
        ));
    }
    Ok(limit.rlim_cur)
}
