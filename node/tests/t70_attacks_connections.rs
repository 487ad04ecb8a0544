//! Attacks on a gateway's connections, against real node processes (three voters, one gateway),
//! each with honest buyers purchasing through the attacked gateway at the same time:
//!
//! - 9 000 idle sockets, then 9 000 event streams: the buyers keep buying; idle sockets are
//!   closed after `limits.idle_timeout_ms`, streams over `limits.streams_max` are refused at once
//!   with 503 `overloaded` and `Retry-After`, the others end after `limits.stream_lifetime_ms`;
//! - idle sockets beyond the connection cap: under pressure, idle connections are closed after
//!   the short `limits.idle_timeout_under_pressure_ms`, and the buyers still get in;
//! - slow heads and slow bodies, one byte a second, from hundreds of sockets (on the public and
//!   the internal listener, and on connections that were served a request first): closed or
//!   answered 408 on time;
//! - an admin call without its token, its body never sent: 401 at once, the body never read.
//!
//! The buyers' figures (successes, failures, latency percentiles) are printed. Their p99 is
//! asserted under [`HONEST_P99_BOUND`] only with `FLASHSTOCK_STRICT_LATENCY=1`: the CI machine is
//! shared, and a timed assertion there fails for reasons other than the one this file tests.
//! The bounds asserted are the configured timeouts, plus [`MARGIN`] for a loaded machine.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use flashstock_deploy::local::LocalCluster;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a socket may take beyond a configured timeout before the test calls it late: the
/// server's watchdog fires on time, but the machine is shared and busy.
const MARGIN: Duration = Duration::from_secs(4);
/// How late the test may see a connection open after the server accepted it (a busy test
/// process polls 9 000 connects), which shortens the lifetime it measures.
const SEEN_LATE: Duration = Duration::from_millis(200);
/// The buyers' p99 the issue asks for, asserted with `FLASHSTOCK_STRICT_LATENCY=1`.
const HONEST_P99_BOUND: Duration = Duration::from_millis(50);
/// Honest buyers purchasing at once, and the pause each makes between two purchases.
const BUYERS: usize = 10;
const BUYER_PAUSE: Duration = Duration::from_millis(100);
/// Connections opened at once by an attacker (more would only fill the listen backlog).
const OPENING_AT_ONCE: usize = 256;

/// The attack tests share the open-files limit and the CPU: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three voters and one gateway with `tweak`ed limits, and a product with ample stock.
async fn sale(tweak: impl Fn(&mut cluster_config::Config)) -> LocalCluster {
    let limit = flashstock_host::raise_open_files_limit().expect("read the open-files limit");
    assert!(
        limit.soft >= 20_000,
        "the attacks need 20000 open files, the hard limit is {}",
        limit.hard
    );
    let cluster = formed(3, 1, tweak).await;
    cluster
        .shop_client()
        .create_product(&product("sale", 10_000_000))
        .await
        .expect("create the product");
    cluster
}

fn public_addr(cluster: &LocalCluster) -> SocketAddr {
    let url = cluster.public_url(cluster.gateway_ids()[0]);
    url.trim_start_matches("http://")
        .parse()
        .expect("an address")
}

// ---- honest buyers ----

/// Honest buyers, on a runtime of their own: in the field they are other machines, so the
/// attack's tasks in this process must not delay them; they share only the CPU.
struct Buyers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Result<Duration, String>>>>,
    runtime: tokio::runtime::Runtime,
}

/// What the honest buyers saw.
struct Outcome {
    successes: usize,
    failures: Vec<String>,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Buyers {
    /// [`BUYERS`] buyers, each on its own keep-alive connection, purchasing one item at a time
    /// through the gateway at `base` until stopped.
    fn start(base: &str) -> Buyers {
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the buyers' runtime");
        let tasks = (0..BUYERS)
            .map(|buyer| {
                let (stop, url) = (stop.clone(), format!("{base}/v1/products/sale/purchase"));
                runtime.spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("a client");
                    let mut seen = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let started = Instant::now();
                        let answer = http
                            .post(&url)
                            .header("idempotency-key", format!("honest-{buyer}-{n}"))
                            .json(&serde_json::json!({ "quantity": 1 }))
                            .send()
                            .await;
                        let took = started.elapsed();
                        seen.push(match answer {
                            Ok(response) if response.status().is_success() => Ok(took),
                            Ok(response) => Err(format!(
                                "{} {}",
                                response.status(),
                                response.text().await.unwrap_or_default()
                            )),
                            Err(error) => Err(format!("{error:?}")),
                        });
                        tokio::time::sleep(BUYER_PAUSE).await;
                    }
                    seen
                })
            })
            .collect();
        Buyers {
            stop,
            tasks,
            runtime,
        }
    }

    async fn finish(self, attack: &str) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        for task in self.tasks {
            for seen in task.await.expect("a buyer") {
                match seen {
                    Ok(took) => latencies.push(took),
                    Err(error) => failures.push(error),
                }
            }
        }
        self.runtime.shutdown_background();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        let outcome = Outcome {
            successes: latencies.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: latencies.last().copied().unwrap_or_default(),
            failures,
        };
        println!(
            "{attack}: honest buyers: {} purchases confirmed, {} failed; latency p50 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms",
            outcome.successes,
            outcome.failures.len(),
            ms(outcome.p50),
            ms(outcome.p99),
            ms(outcome.max)
        );
        outcome
    }
}

impl Outcome {
    /// Every honest purchase succeeded (and there were some); the p99 bound when strict.
    fn assert_served(&self, attack: &str) {
        assert!(
            self.failures.is_empty(),
            "{attack}: {} honest purchases failed, e.g. {:?}",
            self.failures.len(),
            &self.failures[..self.failures.len().min(5)]
        );
        assert!(self.successes >= BUYERS, "{attack}: too few purchases");
        if std::env::var("FLASHSTOCK_STRICT_LATENCY").is_ok_and(|v| v == "1") {
            assert!(
                self.p99 < HONEST_P99_BOUND,
                "{attack}: honest p99 {:?} over {HONEST_P99_BOUND:?}",
                self.p99
            );
        }
    }
}

/// Read one whole answer (head, then `content-length` bytes of body) from `stream`, within
/// [`MARGIN`].
async fn read_answer(stream: &mut TcpStream) {
    let reading = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.expect("read the answer");
            assert!(n > 0, "closed before the answer was whole");
            received.extend_from_slice(&buffer[..n]);
            let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&received[..end]);
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().expect("a length"))
                })
                .expect("an answer with a content-length");
            if received.len() >= end + 4 + length {
                return;
            }
        }
    };
    tokio::time::timeout(MARGIN, reading)
        .await
        .expect("the first request is answered in time");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---- attackers ----

/// Open `count` connections to `addr`, [`OPENING_AT_ONCE`] at a time; each with when it opened.
async fn open(addr: SocketAddr, count: usize) -> Vec<(TcpStream, Instant)> {
    let opened: Vec<(TcpStream, Instant)> = futures::stream::iter(0..count)
        .map(|_| async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            (stream, Instant::now())
        })
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    assert_eq!(opened.len(), count);
    opened
}

/// Read `stream` until the server closes it (EOF or reset), keeping what arrived; when it
/// closed, or `None` if it was still open at `give_up`.
async fn read_until_closed(mut stream: TcpStream, give_up: Duration) -> (Option<Instant>, Vec<u8>) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => {
                    // Keep the head and the last bytes: enough to find the status and the end.
                    if received.len() < 8192 {
                        received.extend_from_slice(&buffer[..n]);
                    } else {
                        received.drain(..received.len() - 16);
                        received.extend_from_slice(&buffer[..n]);
                    }
                }
            }
        }
    };
    let closed = tokio::time::timeout(give_up, read_all).await.ok();
    (closed, received)
}

/// A distribution of durations, for printing: min, median, max.
fn spread(mut durations: Vec<Duration>) -> String {
    durations.sort();
    if durations.is_empty() {
        return "none".into();
    }
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(durations[0]),
        ms(durations[durations.len() / 2]),
        ms(durations[durations.len() - 1])
    )
}

// ---- the attacks ----

/// 9 000 idle sockets, then 9 000 event streams, against one gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sockets_and_stream_floods_leave_room_for_buyers() {
    let _one = ONE_AT_A_TIME.lock().await;
    const SOCKETS: usize = 9000;
    const STREAMS_MAX: usize = 1000;
    let idle_timeout = Duration::from_millis(3000);
    let stream_lifetime = Duration::from_millis(4000);
    let cluster = sale(|config| {
        // Room for every attacker and the buyers without pressure: this test is about the idle
        // timeout; the next one is about the pressure.
        config.limits.connections_max = 12_000;
        config.limits.streams_max = STREAMS_MAX;
        config.limits.stream_lifetime_ms = stream_lifetime.as_millis() as u64;
        config.limits.idle_timeout_ms = idle_timeout.as_millis() as u64;
        config.limits.idle_timeout_under_pressure_ms = 300;
    })
    .await;
    let gateway = cluster.gateway_ids()[0];
    let addr = public_addr(&cluster);
    let base = cluster.public_url(gateway);

    // The buyers alone first, for comparison: the machine is shared and its load varies.
    let buyers = Buyers::start(&base);
    tokio::time::sleep(Duration::from_secs(2)).await;
    buyers
        .finish("no attack (baseline)")
        .await
        .assert_served("no attack");

    // Idle sockets: opened, then never a byte.
    let buyers = Buyers::start(&base);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sockets = open(addr, SOCKETS).await;
    let give_up = idle_timeout + MARGIN * 3;
    let closes =
        futures::future::join_all(sockets.into_iter().map(|(stream, opened)| async move {
            let (closed, received) = read_until_closed(stream, give_up).await;
            (closed.map(|closed| closed - opened), received.is_empty())
        }))
        .await;
    let outcome = buyers.finish("9000 idle sockets").await;
    let lifetimes: Vec<Duration> = closes.iter().filter_map(|(open, _)| *open).collect();
    println!(
        "9000 idle sockets: {} of {SOCKETS} closed by the gateway (idle timeout {idle_timeout:?}); \
         open for {}",
        lifetimes.len(),
        spread(lifetimes.clone())
    );
    outcome.assert_served("9000 idle sockets");
    assert_eq!(lifetimes.len(), SOCKETS, "idle sockets left open");
    assert!(
        closes.iter().all(|(_, silent)| *silent),
        "an idle socket got bytes"
    );
    let (shortest, longest) = (lifetimes.iter().min(), lifetimes.iter().max());
    assert!(
        *shortest.unwrap() + SEEN_LATE >= idle_timeout,
        "closed before the idle timeout: {shortest:?}"
    );
    assert!(
        *longest.unwrap() <= idle_timeout + MARGIN,
        "closed late: {longest:?}"
    );
    assert!(closed_by_server(&cluster, gateway, "public", "idle").await >= SOCKETS as u64);

    // Event streams: STREAMS_MAX are served, every other one refused at once.
    let buyers = Buyers::start(&base);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sockets = open(addr, SOCKETS).await;
    let request = format!("GET /v1/stream HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    let give_up = stream_lifetime + idle_timeout + MARGIN * 3;
    let streams = futures::future::join_all(sockets.into_iter().map(|(mut stream, _)| {
        let request = request.clone();
        async move {
            let asked = Instant::now();
            stream.write_all(request.as_bytes()).await.expect("ask");
            // The status line comes first: the time to it is the time to the verdict.
            let mut head = [0u8; 12];
            let verdict = match stream.read_exact(&mut head).await {
                Ok(_) => Some((
                    String::from_utf8_lossy(&head[9..12]).to_string(),
                    asked.elapsed(),
                )),
                Err(_) => None,
            };
            let (closed, rest) = read_until_closed(stream, give_up).await;
            (verdict, closed.map(|closed| closed - asked), rest)
        }
    }))
    .await;
    let outcome = buyers.finish("9000 event streams").await;
    let served: Vec<_> = streams
        .iter()
        .filter(|(verdict, _, _)| verdict.as_ref().is_some_and(|(status, _)| status == "200"))
        .collect();
    let refused: Vec<_> = streams
        .iter()
        .filter(|(verdict, _, _)| verdict.as_ref().is_some_and(|(status, _)| status == "503"))
        .collect();
    println!(
        "9000 event streams: {} served (limits.streams_max {STREAMS_MAX}), {} refused with 503; \
         refusal after {}; served streams closed after {}",
        served.len(),
        refused.len(),
        spread(
            refused
                .iter()
                .map(|(v, _, _)| v.as_ref().unwrap().1)
                .collect()
        ),
        spread(served.iter().filter_map(|(_, closed, _)| *closed).collect()),
    );
    outcome.assert_served("9000 event streams");
    assert_eq!(served.len(), STREAMS_MAX);
    assert_eq!(refused.len(), SOCKETS - STREAMS_MAX);
    for (_, closed, rest) in &refused {
        let rest = String::from_utf8_lossy(rest).to_lowercase();
        assert!(rest.contains("retry-after: 5"), "{rest}");
        assert!(rest.contains(r#""code":"overloaded""#), "{rest}");
        // Refused, then idle: closed after the idle timeout.
        assert!(closed.is_some_and(|closed| closed <= idle_timeout + MARGIN));
    }
    for (_, closed, rest) in &served {
        // The stream ended (the last chunk) at its lifetime, then the idle connection closed.
        assert!(rest.ends_with(b"\r\n0\r\n\r\n"), "a stream did not end");
        let closed = closed.expect("a served stream ends and its connection closes");
        assert!(
            closed + SEEN_LATE >= stream_lifetime
                && closed <= stream_lifetime + idle_timeout + MARGIN,
            "{closed:?}"
        );
    }
}

/// More idle sockets than the connection cap: under pressure they are closed after the short
/// idle timeout, and the buyers still get connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_pressure_idle_sockets_make_room_for_buyers() {
    let _one = ONE_AT_A_TIME.lock().await;
    const CAP: usize = 2000;
    const SOCKETS: usize = 3000;
    let under_pressure = Duration::from_millis(300);
    let cluster = sale(|config| {
        config.limits.connections_max = CAP;
        config.limits.streams_max = 100;
        config.limits.idle_timeout_ms = 20_000;
        config.limits.idle_timeout_under_pressure_ms = under_pressure.as_millis() as u64;
    })
    .await;
    let gateway = cluster.gateway_ids()[0];
    let addr = public_addr(&cluster);
    let buyers = Buyers::start(&cluster.public_url(gateway));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sockets = open(addr, SOCKETS).await;
    // Keep the attack up for a few seconds (the longer mode: longer), buyers buying, then let go.
    tokio::time::sleep(common::attack_hold(Duration::from_secs(3))).await;
    let closes = futures::future::join_all(
        sockets
            .into_iter()
            .map(|(stream, _)| read_until_closed(stream, Duration::from_millis(500))),
    )
    .await;
    let outcome = buyers.finish("3000 idle sockets over a cap of 2000").await;
    let closed = closes.iter().filter(|(closed, _)| closed.is_some()).count();
    let by_pressure = closed_by_server(&cluster, gateway, "public", "idle_under_pressure").await;
    let by_idle = closed_by_server(&cluster, gateway, "public", "idle").await;
    println!(
        "{SOCKETS} idle sockets over a cap of {CAP}: {closed} closed by the gateway within 4 s \
         (idle timeout 20 s, under pressure {under_pressure:?}), {by_pressure} for pressure"
    );
    outcome.assert_served("3000 idle sockets over a cap of 2000");
    // The sockets over the cap got in only because idle ones were closed for pressure, long
    // before the 20 s idle timeout; once below the cap again, the rest may stay until it.
    assert!(by_pressure >= (SOCKETS - CAP) as u64, "{by_pressure}");
    assert!(closed as u64 >= by_pressure.min(SOCKETS as u64) - BUYERS as u64);
    assert_eq!(by_idle, 0);
}

/// Heads and bodies sent one byte a second, from hundreds of sockets: closed (head) or
/// answered 408 (body) within their timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_heads_and_slow_bodies_are_cut_on_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    const SLOW_HEADS: usize = 150;
    const SLOW_BODIES: usize = 150;
    const SLOW_INTERNAL_HEADS: usize = 100;
    const SLOW_SECOND_HEADS: usize = 50;
    let header_timeout = Duration::from_millis(2000);
    let body_timeout = Duration::from_millis(2000);
    let cluster = sale(|config| {
        config.limits.header_read_timeout_ms = header_timeout.as_millis() as u64;
        config.limits.body_read_timeout_ms = body_timeout.as_millis() as u64;
    })
    .await;
    let gateway = cluster.gateway_ids()[0];
    let addr = public_addr(&cluster);
    let internal: SocketAddr = cluster.addr(cluster.voter_ids()[0]).parse().unwrap();
    let buyers = Buyers::start(&cluster.public_url(gateway));

    /// Send `head` at once, then `drip` one byte a second; when the server closed the socket
    /// (counted from the first byte) and what it answered. With `served_first`, the connection
    /// is first served one whole request, so the slow head is its second.
    async fn dribble(
        addr: SocketAddr,
        head: String,
        drip: &'static [u8],
        served_first: bool,
    ) -> (Option<Duration>, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        if served_first {
            let request = format!("GET /v1/health HTTP/1.1\r\nhost: {addr}\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("send");
            read_answer(&mut stream).await;
        }
        let started = Instant::now();
        stream.write_all(head.as_bytes()).await.expect("send");
        let (mut reader, mut writer) = stream.into_split();
        let writing = tokio::spawn(async move {
            for byte in drip.iter().cycle() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if writer.write_all(&[*byte]).await.is_err() {
                    return;
                }
            }
        });
        let mut received = Vec::new();
        let mut buffer = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(n) => received.extend_from_slice(&buffer[..n]),
                }
            }
        })
        .await
        .ok();
        writing.abort();
        (closed, String::from_utf8_lossy(&received).to_string())
    }

    let slow_head = |addr: SocketAddr, served_first: bool| {
        dribble(
            addr,
            format!("GET /v1/products HTTP/1.1\r\nhost: {addr}\r\nx-slow: "),
            b"a",
            served_first,
        )
    };
    let slow_body = |addr: SocketAddr, i: usize| {
        dribble(
            addr,
            format!(
                "POST /v1/products/sale/purchase HTTP/1.1\r\nhost: {addr}\r\n\
                 idempotency-key: slow-{i}\r\ncontent-type: application/json\r\n\
                 content-length: 100\r\n\r\n"
            ),
            b" ",
            false,
        )
    };
    let heads = futures::future::join_all(
        (0..SLOW_HEADS + SLOW_SECOND_HEADS).map(|i| slow_head(addr, i >= SLOW_HEADS)),
    );
    let bodies = futures::future::join_all((0..SLOW_BODIES).map(|i| slow_body(addr, i)));
    let internal_heads =
        futures::future::join_all((0..SLOW_INTERNAL_HEADS).map(|_| slow_head(internal, false)));
    let (heads, bodies, internal_heads) = tokio::join!(heads, bodies, internal_heads);
    let outcome = buyers.finish("slow heads and bodies").await;
    let times = |answers: &[(Option<Duration>, String)]| -> Vec<Duration> {
        answers.iter().filter_map(|(closed, _)| *closed).collect()
    };
    println!(
        "{SLOW_HEADS} slow heads (public) and {SLOW_SECOND_HEADS} slow second heads: closed \
         after {}; {SLOW_INTERNAL_HEADS} slow heads \
         (internal): closed after {}; {SLOW_BODIES} slow bodies: closed after {} \
         (timeouts: head {header_timeout:?}, body {body_timeout:?})",
        spread(times(&heads)),
        spread(times(&internal_heads)),
        spread(times(&bodies)),
    );
    outcome.assert_served("slow heads and bodies");
    for (closed, received) in heads.iter().chain(&internal_heads) {
        let closed = closed.expect("a slow head is cut");
        assert!(
            closed >= header_timeout && closed <= header_timeout + MARGIN,
            "{closed:?}"
        );
        assert!(received.is_empty(), "a slow head got an answer: {received}");
    }
    for (closed, received) in &bodies {
        let closed = closed.expect("a slow body is cut");
        assert!(
            closed >= body_timeout && closed <= body_timeout + MARGIN,
            "{closed:?}"
        );
        assert!(received.starts_with("HTTP/1.1 408"), "{received}");
        assert!(
            received.contains(r#""code":"request_timeout""#),
            "{received}"
        );
    }
    // No slow body bought anything.
    let view = cluster
        .shop_client()
        .product_linearizable("sale")
        .await
        .expect("read");
    assert_eq!(view.product.sold as usize, outcome.successes);
}

/// An admin call without the token, its body announced and never sent: 401 at once, long
/// before the body timeout, so the body was never waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_calls_without_the_token_are_refused_before_the_body() {
    let _one = ONE_AT_A_TIME.lock().await;
    let body_timeout = Duration::from_secs(30);
    let cluster = sale(|config| {
        config.limits.body_read_timeout_ms = body_timeout.as_millis() as u64;
    })
    .await;
    let addr = public_addr(&cluster);
    for (path, length) in [
        ("/v1/admin/products", 1000u64),
        ("/v1/admin/products/sale/restock", 1000),
        // Far over limits.body_bytes_max: still 401, not 413, as the token comes first.
        ("/v1/admin/products", 1 << 40),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nidempotency-key: k-{length}\r\n\
             content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        let started = Instant::now();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(body_timeout / 2, stream.read(&mut answer))
            .await
            .expect("answered before the body timeout")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        println!(
            "admin {path} without token, {length} body bytes announced, none sent: answered in \
             {:.1} ms",
            ms(started.elapsed())
        );
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains(r#""code":"unauthorized""#), "{answer}");
    }
    let view = cluster
        .shop_client()
        .product_linearizable("sale")
        .await
        .expect("read");
    assert_eq!(view.product.stock, 10_000_000);
}
