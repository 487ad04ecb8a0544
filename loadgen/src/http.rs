//! One persistent HTTP/1.1 connection per simulated client.
//!
//! A pooled client (reqwest) would share connections between clients and hide how many a server
//! really holds. Here each [`Connection`] owns exactly one TCP connection, opened before the
//! measured phase and reopened only after a transport failure, so C clients are C sockets on the
//! servers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use flashstock_tls::rustls::pki_types::ServerName;
use flashstock_tls::tokio_rustls::TlsConnector;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long opening a TCP connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers a run sends its load to: base URLs such as `http://127.0.0.101:8080`, or
/// `https://...` with [`Target::tls`].
#[derive(Debug, Clone)]
pub struct Target {
    pub urls: Vec<String>,
    /// Bearer token for the admin routes (catalog set-up).
    pub admin_token: Option<String>,
    /// The TLS config of `https://` URLs.
    pub tls: Option<flashstock_client::TlsConfig>,
}

impl Target {
    pub fn new(urls: Vec<String>, admin_token: Option<String>) -> Target {
        assert!(!urls.is_empty(), "a target has at least one URL");
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        Target {
            urls,
            admin_token,
            tls: None,
        }
    }

    /// The gateways of a local cluster, with its admin token (and its TLS, if on).
    pub fn gateways_of(cluster: &flashstock_deploy::local::LocalCluster) -> Target {
        let mut target = Target::new(cluster.gateway_urls(), Some(cluster.admin_token.clone()));
        target.tls = cluster.shop_tls();
        target
    }

    /// A connection to `url` (one of [`Target::urls`]) with this target's TLS.
    pub fn connection(&self, url: &str, timeout: Duration) -> Result<Connection, String> {
        Ok(Connection::new(url, timeout)?.with_tls(self.tls.clone()))
    }

    /// The server of connection `index`: connections are spread round-robin.
    pub fn url_for(&self, index: usize) -> &str {
        &self.urls[index % self.urls.len()]
    }
}

/// A failure below HTTP: the request may or may not have reached the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timeout")]
    Timeout,
    #[error("connection: {0}")]
    Io(String),
}

impl TransportError {
    /// A short stable label, for counting errors by kind.
    pub fn label(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "connect",
            TransportError::Timeout => "timeout",
            TransportError::Io(_) => "connection",
        }
    }
}

/// An HTTP answer: status and whole body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// `200 OK` or `201 Created` (a hold or a cart's order is created).
    pub fn is_success(&self) -> bool {
        matches!(self.status, 200 | 201)
    }
}

/// One keep-alive HTTP/1.1 connection to one server.
pub struct Connection {
    addr: SocketAddr,
    host: HeaderValue,
    timeout: Duration,
    /// `https://`: the handshake's config; `None` for `http://`.
    tls: Option<flashstock_client::TlsConfig>,
    https: bool,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// `http://host:port[/...]` or `https://...` → the socket address and the Host header.
pub fn parse_base_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url}: only http:// and https:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = authority
        .parse()
        .map_err(|_| format!("{url}: the host must be an IP address and a port"))?;
    Ok((addr, authority.to_owned()))
}

impl Connection {
    /// A connection to the server at `base_url`, opened on first use. `timeout` bounds each
    /// exchange.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Connection, String> {
        let (addr, host) = parse_base_url(base_url)?;
        Ok(Connection {
            addr,
            host: HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
            timeout,
            tls: None,
            https: base_url.starts_with("https://"),
            sender: None,
        })
    }

    /// Use `tls` for an `https://` URL (required there; ignored for `http://`).
    pub fn with_tls(mut self, tls: Option<flashstock_client::TlsConfig>) -> Connection {
        self.tls = tls;
        self
    }

    /// Open the TCP connection now, if it is not open.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        if self.sender.as_ref().is_some_and(|s| !s.is_closed()) {
            return Ok(());
        }
        self.sender = None;
        let open = async {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            stream
                .set_nodelay(true)
                .map_err(|e| TransportError::Connect(e.to_string()))?;
            let connect = |e: &dyn std::fmt::Display| TransportError::Connect(e.to_string());
            if !self.https {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| connect(&e))?;
                // The connection task ends when the sender is dropped or the peer closes.
                tokio::spawn(connection);
                return Ok::<_, TransportError>(sender);
            }
            let config = self
                .tls
                .clone()
                .ok_or_else(|| connect(&"an https:// URL needs a TLS config"))?;
            let name = ServerName::IpAddress(self.addr.ip().into());
            let stream = TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| connect(&e))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| connect(&e))?;
            tokio::spawn(connection);
            Ok(sender)
        };
        let sender = tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| TransportError::Connect("timed out".into()))??;
        self.sender = Some(sender);
        Ok(())
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Answer, TransportError> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST path` with a JSON body and extra headers.
    pub async fn post_json(
        &mut self,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        self.send(Method::POST, path, headers, body).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        self.connect().await?;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.host.clone());
        if method == Method::POST {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| TransportError::Io(format!("bad request: {e}")))?;
        let sender = self.sender.as_mut().expect("connected above");
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| TransportError::Io(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout),
        };
        if result.is_err() {
            // The connection's state is unknown (a half-read answer, say): start a new one.
            self.sender = None;
        }
        result
    }
}
