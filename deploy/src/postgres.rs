//! A real, throwaway PostgreSQL server for tests and benchmarks.
//!
//! [`Postgres::start`] runs Debian's `initdb` into a temporary directory and starts the server
//! with `pg_ctl` on a free loopback port, TCP only (no Unix socket), with `fsync` and
//! `synchronous_commit` on: the durability a shop would run with. It can be stopped the polite
//! way ([`Postgres::stop_fast`]), crashed ([`Postgres::kill`]: SIGKILL to the postmaster and every
//! backend, as a power cut would leave it) and started again on the same data and port
//! ([`Postgres::start_again`]). Dropping it stops the server and removes the directory.
//!
//! [`Postgres::start_standby_of`] copies a running server (`pg_basebackup -R`) into a streaming
//! standby; [`Postgres::promote`] makes a standby a primary, [`Postgres::rebuild_as_standby_of`]
//! turns a dead former primary into the new primary's standby, and [`multi_host_url`] names
//! several servers with `target_session_attrs=read-write`, as the voters' archive URL does.
//!
//! [`Postgres::start_in`] keeps the server's directory instead (the local demo cluster's archive):
//! a rerun finds the data and the port it used before.
//!
//! PostgreSQL refuses to run as root. When this process is root, the server runs as the
//! `postgres` account that Debian's package creates (or `nobody`), and the directory is handed to
//! that account.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::local::free_port;
use flashstock_host::{is_root, signal, Signal};

/// The role every test connects as; created by `initdb`, trusted on loopback.
pub const USER: &str = "flashstock";
/// The database every test uses (the one `initdb` creates).
pub const DATABASE: &str = "postgres";

/// How to start the server.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `max_connections`. PostgreSQL's own default is 100.
    pub max_connections: u32,
    /// The address to listen on; clients from its /15 network are trusted.
    pub listen_ip: Ipv4Addr,
    /// Serve TLS with this certificate and key (PEM): `ssl=on`; clients choose whether to
    /// use it (`sslmode`).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 100,
            listen_ip: Ipv4Addr::LOCALHOST,
            tls: None,
        }
    }
}

/// A running (or stopped) throwaway server. See the module documentation.
pub struct Postgres {
    bin: PathBuf,
    dir: Dir,
    port: u16,
    options: PostgresOptions,
    /// Run the server binaries as this account (uid, gid) when we are root.
    account: Option<(u32, u32)>,
    running: bool,
}

/// Where the server's files live: removed on drop, or kept.
enum Dir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Dir {
    fn path(&self) -> &Path {
        match self {
            Dir::Temporary(dir) => dir.path(),
            Dir::Kept(path) => path,
        }
    }
}

impl Postgres {
    /// Initialise a data directory in a new temporary directory and start the server. Errors say
    /// what to install when the binaries are missing, and carry the server's log when it does not
    /// start.
    pub fn start(options: PostgresOptions) -> std::io::Result<Postgres> {
        let dir = tempfile::Builder::new()
            .prefix("flashstock-pg-")
            .tempdir()?;
        Postgres::start_at(Dir::Temporary(dir), options)
    }

    /// Start the server kept in `dir`: initialised there on the first call, on a free port that
    /// later calls reuse (written to `dir/port`). Dropping it stops the server and keeps `dir`.
    pub fn start_in(dir: &Path, options: PostgresOptions) -> std::io::Result<Postgres> {
        std::fs::create_dir_all(dir)?;
        Postgres::start_at(Dir::Kept(dir.to_path_buf()), options)
    }

    fn start_at(dir: Dir, options: PostgresOptions) -> std::io::Result<Postgres> {
        let bin = binaries()?;
        let account = server_account()?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let port_file = dir.path().join("port");
        let port = match std::fs::read_to_string(&port_file) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| std::io::Error::other(format!("{port_file:?} holds no port")))?,
            Err(_) => {
                let port = free_port(options.listen_ip)?;
                std::fs::write(&port_file, port.to_string())?;
                port
            }
        };
        let mut postgres = Postgres {
            bin,
            dir,
            port,
            options,
            account,
            running: false,
        };
        if postgres.data_dir().join("PG_VERSION").exists() {
            postgres.start_again()?;
            return Ok(postgres);
        }
        let data = postgres.data_dir();
        postgres.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                // The directory is thrown away after the test; the server itself syncs.
                "--no-sync",
            ],
        )?;
        if !postgres.options.listen_ip.is_loopback() {
            // initdb trusts loopback only; trust the clients' private network too.
            let network = u32::from(postgres.options.listen_ip) & !0x1_ffff;
            // Replication too, so that a standby can stream from this server.
            let network = std::net::Ipv4Addr::from(network);
            let line = format!(
                "host all all {network}/15 trust\nhost replication all {network}/15 trust\n"
            );
            let hba = postgres.data_dir().join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba)?;
            text.push_str(&line);
            std::fs::write(&hba, text)?;
        }
        postgres.start_again()?;
        Ok(postgres)
    }

    /// The URL to connect with.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}@{}:{}/{DATABASE}",
            self.options.listen_ip, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Start the server on its data directory and port; returns once it accepts connections.
    pub fn start_again(&mut self) -> std::io::Result<()> {
        // `wal_keep_size` as deploy/RUNBOOK.md sets it: a standby cut off by its primary's crash
        // resumes streaming from the WAL the primary kept. Without it the restarted primary
        // recycles the segment the standby asks for, the standby never streams again, and with
        // `synchronous_standby_names = '*'` every commit waits for it: the archive stalls for good.
        let mut settings = format!(
            "-p {} -c listen_addresses={} -c unix_socket_directories='' \
             -c max_connections={} -c fsync=on -c synchronous_commit=on -c wal_keep_size=1GB",
            self.port, self.options.listen_ip, self.options.max_connections
        );
        if let Some((cert, key)) = self.options.tls.clone() {
            // The server reads its key only if no one else can: copy both into the data
            // directory, owned by the server's account, mode 0600.
            let data = self.data_dir();
            for (from, name) in [(&cert, "server.crt"), (&key, "server.key")] {
                let to = data.join(name);
                std::fs::copy(from, &to)?;
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
                }
                if let Some((uid, gid)) = self.account {
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid))?;
                }
            }
            settings.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let (data, log) = (self.data_dir(), self.log_path());
        let started = self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &settings,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(std::io::Error::other(format!(
                "{e}\n--- server log ---\n{}",
                tail.join("\n")
            )));
        }
        self.running = true;
        Ok(())
    }

    /// Start a streaming standby of `primary` in a new temporary directory, on a free port of
    /// the same address: a base backup (`pg_basebackup -R`, which writes the standby's
    /// `primary_conninfo`), then the server in recovery. The primary's
    /// `synchronous_standby_names` is left as it is ([`Postgres::set_synchronous_standby_names`]).
    pub fn start_standby_of(primary: &Postgres) -> std::io::Result<Postgres> {
        let dir = tempfile::Builder::new()
            .prefix("flashstock-pg-")
            .tempdir()?;
        let bin = binaries()?;
        let account = server_account()?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let port = free_port(primary.options.listen_ip)?;
        std::fs::write(dir.path().join("port"), port.to_string())?;
        let mut standby = Postgres {
            bin,
            dir: Dir::Temporary(dir),
            port,
            options: primary.options.clone(),
            account,
            running: false,
        };
        standby.rebuild_as_standby_of(primary)?;
        Ok(standby)
    }

    /// Make this stopped server a fresh standby of `primary` on its own port: its data directory
    /// is deleted, copied from `primary` (`pg_basebackup -R`) and started in recovery. How a
    /// failed primary comes back after its standby was promoted.
    pub fn rebuild_as_standby_of(&mut self, primary: &Postgres) -> std::io::Result<()> {
        if self.running {
            return Err(std::io::Error::other(
                "a running server cannot be rebuilt as a standby",
            ));
        }
        let data = self.data_dir();
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        let port = primary.port.to_string();
        let host = primary.options.listen_ip.to_string();
        self.run(
            "pg_basebackup",
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                USER,
                "-D",
                path_str(&data)?,
                "-X",
                "stream",
                "-R",
                // An immediate checkpoint on the primary: the copy starts now, not at the next
                // scheduled one.
                "-c",
                "fast",
                // The directory is thrown away after the test; the server itself syncs.
                "--no-sync",
            ],
        )?;
        self.start_again()
    }

    /// Promote this standby to a primary (`pg_ctl promote`); returns once it accepts writes.
    pub fn promote(&mut self) -> std::io::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-w", "-t", "60", "promote"],
        )?;
        Ok(())
    }

    /// Set `synchronous_standby_names` (`ALTER SYSTEM`, then a reload): `*` makes every commit
    /// wait for a standby's flush, `''` lets a lone primary commit alone.
    pub fn set_synchronous_standby_names(&self, names: &str) -> std::io::Result<()> {
        self.sql(&format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{}'",
            names.replace('\'', "''")
        ))?;
        self.sql("SELECT pg_reload_conf()")?;
        Ok(())
    }

    /// Run one SQL statement with `psql` as [`USER`]; its output, unaligned, tuples only.
    pub fn sql(&self, statement: &str) -> std::io::Result<String> {
        let host = self.options.listen_ip.to_string();
        let port = self.port.to_string();
        let output = self.run(
            "psql",
            &[
                "-h", &host, "-p", &port, "-U", USER, "-d", DATABASE, "-Atc", statement,
            ],
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stop the server the way an operator would: `pg_ctl stop -m fast` (connections are cut,
    /// committed work is kept).
    pub fn stop_fast(&mut self) -> std::io::Result<()> {
        self.stop("fast")
    }

    /// Crash the server: SIGKILL to the postmaster and all its children at once, so the next
    /// start runs crash recovery from the WAL.
    pub fn kill(&mut self) -> std::io::Result<()> {
        let pid = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))?
            .lines()
            .next()
            .and_then(|line| line.trim().parse::<u32>().ok())
            .ok_or_else(|| std::io::Error::other("postmaster.pid holds no pid"))?;
        // The backends first, then the postmaster, all within microseconds: a backend that
        // exits by itself meanwhile is not an error, a postmaster that cannot be killed is.
        let mut pids = children_of(pid);
        for child in &pids {
            let _ = signal(*child, Signal::Kill);
        }
        signal(pid, Signal::Kill)?;
        // Anything the postmaster forked after the first listing dies with it, as a crash would
        // leave it: find those too.
        for child in children_of(pid) {
            let _ = signal(child, Signal::Kill);
            pids.push(child);
        }
        pids.push(pid);
        // The port and shared memory are free once every process is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids
            .iter()
            .any(|pid| flashstock_host::process::exists(*pid))
        {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "PostgreSQL processes outlived SIGKILL",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.running = false;
        Ok(())
    }

    fn stop(&mut self, mode: &str) -> std::io::Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", mode, "-w", "-t", "60", "stop"],
        )?;
        self.running = false;
        Ok(())
    }

    /// Run one of the server's binaries, as the server account when we are root.
    fn run(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir(self.dir.path());
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
        let output = command.output()?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(std::io::Error::other(format!(
                "{program} {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

/// One URL naming every server of `servers`, in order, with `target_session_attrs=read-write`:
/// a client connects to whichever of them accepts writes (the primary), so a promotion needs no
/// configuration change.
pub fn multi_host_url(servers: &[&Postgres]) -> String {
    let hosts: Vec<String> = servers
        .iter()
        .map(|server| format!("{}:{}", server.options.listen_ip, server.port))
        .collect();
    format!(
        "postgres://{USER}@{}/{DATABASE}?target_session_attrs=read-write",
        hosts.join(",")
    )
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop("immediate");
        }
    }
}

/// The directory of Debian's PostgreSQL binaries (the newest version installed).
fn binaries() -> std::io::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        std::io::Error::other(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; \
             install them with: sudo apt-get install -y postgresql",
        )
    })
}

/// The account to run the server as: none unless we are root, then `postgres` or `nobody`.
fn server_account() -> std::io::Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let account = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    account("postgres")
        .or_else(|| account("nobody"))
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::other("running as root, and neither `postgres` nor `nobody` exists")
        })
}

/// Every process whose parent is `parent` (one level: PostgreSQL's backends are all children of
/// the postmaster).
fn children_of(parent: u32) -> Vec<u32> {
    flashstock_host::pids()
        .into_iter()
        .filter(|pid| flashstock_host::Stat::read(*pid).is_some_and(|stat| stat.ppid == parent))
        .collect()
}

fn path_str(path: &Path) -> std::io::Result<&str> {
    path.to_str()
        .ok_or_else(|| std::io::Error::other(format!("path {path:?} is not UTF-8")))
}
