//! A real, throwaway Redis server for the benchmark's Redis baseline.
//!
//! [`RedisServer::start`] runs Debian's `redis-server` on a free loopback port, in a temporary
//! directory, configured as the flash-sale stacks run it: everything in memory, no snapshot and
//! no append-only file (`--save ''`, `--appendonly no`), so nothing it confirms survives a crash.
//! Dropping it kills the server and removes the directory.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::local::free_port;

/// How long the server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running Redis server. See the module documentation.
pub struct RedisServer {
    child: Child,
    port: u16,
    /// Holds the server's working directory until the server is gone.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Start `redis-server` with room for `clients_max` clients; returns once it answers `PING`.
    pub fn start(clients_max: u32) -> std::io::Result<RedisServer> {
        let binary = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("flashstock-redis-")
            .tempdir()?;
        let port = free_port(Ipv4Addr::LOCALHOST)?;
        let log = dir.path().join("redis.log");
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxclients", &clients_max.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::other(format!("{}: {e}", binary.display())))?;
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        server.wait_ready(&log)?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Poll with `PING` until the server answers `+PONG`, it exits, or the timeout passes.
    fn wait_ready(&mut self, log: &std::path::Path) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + START_TIMEOUT;
        let failed = |why: String| {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            std::io::Error::other(format!("redis-server {why}; its log:\n{log}"))
        };
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(failed(format!("exited with {status}")));
            }
            if let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
                stream.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut answer).is_ok()
                    && &answer == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "did not answer PING within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `redis-server`, or a message saying how to install it.
fn binary() -> std::io::Result<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            std::io::Error::other(
                "redis-server not found in /usr/bin or /usr/local/bin; \
                 install it with: sudo apt-get install -y redis-server",
            )
        })
}
