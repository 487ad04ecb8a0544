//! Network namespaces: moving one thread into a namespace that `ip netns add` made.

use std::os::fd::AsRawFd;
use std::path::Path;

/// Where `ip netns add NAME` keeps its handle on the namespace NAME.
const NETNS_DIR: &str = "/run/netns";

/// Move the calling thread into the network namespace `name` (made by `ip netns add`): the
/// sockets it opens from then on live there, with that namespace's addresses and routes. Other
/// threads of the process stay where they are, and so do sockets opened before. Needs root.
pub fn enter_network_namespace(name: &str) -> std::io::Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(std::io::Error::other(format!(
            "{name:?} is not a namespace name"
        )));
    }
    let handle = std::fs::File::open(Path::new(NETNS_DIR).join(name))?;
    // SAFETY: setns with an open descriptor of a namespace file; it changes only the network
    // namespace of the calling thread, and the descriptor stays open for the call.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
