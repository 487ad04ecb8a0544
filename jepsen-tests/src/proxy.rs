//! A userspace fault proxy in front of each voter's internal port, for the faults the kernel
//! cannot make here: added latency (no `netem` in this kernel).
//!
//! Each voter advertises its proxy's address instead of its own, so every connection to it
//! (Raft from the other voters, batches from the gateways, the harness's own calls) goes through
//! the proxy, a process of its own: in the voter's network namespace when nodes have one
//! (`198.18.0.N:7001`, forwarding to `198.18.0.N:7000`), on the voter's loopback address
//! otherwise. Partition rules name the proxy's port, the address other nodes use, so they keep
//! working. The proxy forwards bytes unchanged; when told to, it holds every chunk for a fixed
//! delay before passing it on (in order, without slowing the stream down otherwise).
//!
//! Control: a line `latency <ms>` sent to the proxy's control port sets the delay of both
//! directions of every connection, new and open; the proxy answers `ok`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flashstock_deploy::local::free_port;
use flashstock_deploy::netns::NodeNetwork;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks held at once per direction of a connection before reading waits.
const CHUNKS_IN_FLIGHT: usize = 1024;
/// The proxy's port and its control port in a voter's own namespace.
const PROXY_PORT: u16 = 7001;
const CONTROL_PORT: u16 = 7002;

/// Where one voter's proxy listens.
#[derive(Debug, Clone, Copy)]
pub struct ProxyAddrs {
    pub listen: SocketAddr,
    pub control: SocketAddr,
}

/// The proxy addresses of voters `ids` on `network`.
pub fn plan(network: &NodeNetwork, ids: &[u64]) -> std::io::Result<BTreeMap<u64, ProxyAddrs>> {
    ids.iter()
        .map(|id| {
            let ip = network.ip(*id);
            let (listen, control) = match network {
                NodeNetwork::Loopback => (free_port(ip)?, free_port(ip)?),
                NodeNetwork::Namespaces { .. } => (PROXY_PORT, CONTROL_PORT),
            };
            Ok((
                *id,
                ProxyAddrs {
                    listen: SocketAddr::from((ip, listen)),
                    control: SocketAddr::from((ip, control)),
                },
            ))
        })
        .collect()
}

/// The running proxies of a run; killed when dropped.
pub struct Proxies {
    children: Vec<Child>,
    controls: BTreeMap<u64, SocketAddr>,
}

impl Proxies {
    /// Start one proxy per voter, forwarding to `targets[id]`, and wait until each answers.
    pub async fn start(
        network: &NodeNetwork,
        addrs: &BTreeMap<u64, ProxyAddrs>,
        targets: &BTreeMap<u64, SocketAddr>,
    ) -> Result<Proxies, String> {
        let binary = harness_binary()?;
        let mut proxies = Proxies {
            children: Vec::new(),
            controls: BTreeMap::new(),
        };
        for (id, addr) in addrs {
            let mut command = match network.namespace(*id) {
                Some(ns) => {
                    let mut command = Command::new("ip");
                    command.args(["netns", "exec", &ns]).arg(&binary);
                    command
                }
                None => Command::new(&binary),
            };
            let child = command
                .arg("--proxy-listen")
                .arg(addr.listen.to_string())
                .arg("--proxy-to")
                .arg(targets[id].to_string())
                .arg("--proxy-control")
                .arg(addr.control.to_string())
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting the proxy of voter {id}: {e}"))?;
            proxies.children.push(child);
            proxies.controls.insert(*id, addr.control);
        }
        for id in addrs.keys() {
            proxies.set_latency(*id, 0).await?;
        }
        Ok(proxies)
    }

    /// Set the delay of voter `id`'s proxy, retrying for a few seconds while it starts.
    pub async fn set_latency(&self, id: u64, ms: u64) -> Result<(), String> {
        let control = self.controls[&id];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match command(control, &format!("latency {ms}")).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("the proxy of voter {id} at {control}: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub fn voters(&self) -> Vec<u64> {
        self.controls.keys().copied().collect()
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn command(control: SocketAddr, line: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(control).await?;
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).await?;
    if answer.trim() == "ok" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answered {answer:?}")))
    }
}

/// The `jepsen` binary, which runs a proxy with `--proxy-listen`.
fn harness_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    if exe.file_name().is_some_and(|name| name == "jepsen") {
        return Ok(exe);
    }
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("jepsen"))
        .find(|candidate| Path::is_file(candidate))
        .ok_or_else(|| format!("the jepsen binary is not next to {}", exe.display()))
}

/// Run a proxy until the process is killed: forward `listen` to `to`, take commands on
/// `control`.
pub async fn serve(listen: SocketAddr, to: SocketAddr, control: SocketAddr) -> std::io::Result<()> {
    let latency = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind(listen).await?;
    let controls = TcpListener::bind(control).await?;
    let control_latency = latency.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = controls.accept().await {
            let latency = control_latency.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                let answer = match line.trim().strip_prefix("latency ").map(str::parse::<u64>) {
                    Some(Ok(ms)) => {
                        latency.store(ms, Ordering::Relaxed);
                        "ok\n"
                    }
                    _ => "error: expected `latency <ms>`\n",
                };
                let _ = write.write_all(answer.as_bytes()).await;
            });
        }
    });
    loop {
        let (inbound, _) = listener.accept().await?;
        let latency = latency.clone();
        tokio::spawn(async move {
            // Connect from the same address the node would see anyway: any local one.
            let Ok(outbound) = TcpStream::connect(to).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::spawn(pipe(in_read, out_write, latency.clone()));
            tokio::spawn(pipe(out_read, in_write, latency));
        });
    }
}

/// Copy one direction, each chunk held for the current latency after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Arc<AtomicU64>,
) {
    let (chunks, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = Instant::now() + Duration::from_millis(latency.load(Ordering::Relaxed));
        if chunks.send((at, buffer[..n].to_vec())).await.is_err() {
            break;
        }
    }
    drop(chunks);
    let _ = writer.await;
}
