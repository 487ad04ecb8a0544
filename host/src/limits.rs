//! The open-files limit. A gateway holds one descriptor per client connection and the load
//! generator one per simulated client: thousands, where a common soft default is 1024.

/// The open-files limit of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limit in force.
    pub soft: u64,
    /// How far the soft limit may be raised without privileges.
    pub hard: u64,
}

/// Raise the soft open-files limit to the hard limit. Returns the limit in force afterwards
/// (unchanged when raising failed); an error only when the limit cannot even be read.
pub fn raise_open_files_limit() -> std::io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed by pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(OpenFiles {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_files_limit().expect("getrlimit works on Linux");
        assert_eq!(limit.soft, limit.hard);
    }
}
