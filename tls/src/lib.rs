//! TLS for flashstock, independent of the transport that carries it.
//!
//! An [`Identity`] is a certificate chain and its private key read from PEM files, optionally with
//! the certificate authority (CA) that peers' certificates must chain to. It is read again when
//! its files change ([`Identity::reload_if_changed`]): the configs built from it
//! ([`Identity::server_config`], [`Identity::client_config`]) ask it for the current key and the
//! current trust on every handshake, so a renewed certificate or a rolled-over CA takes effect on
//! the next connection, with no restart and no rebuilt client.
//!
//! - Between nodes, TLS is mutual: each side presents its certificate and requires the other's to
//!   chain to the cluster's CA. It proves a peer belongs to the cluster and keeps the traffic
//!   private; what a peer may do is still decided by its role's credential (the
//!   `x-flashstock-secret` header), whatever carries it.
//! - On a gateway's public listener, the server presents its certificate and asks none back.
//! - [`trusting`] builds the config of a client that only checks servers (browsers' role, or the
//!   harness talking to gateways).
//!
//! Every config uses rustls with the `ring` provider, TLS 1.3 and 1.2, and ALPN `http/1.1`.
//! [`authority`] makes certificates for tests and for `stockctl certs`.

pub mod authority;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

pub use rustls;
pub use tokio_rustls;

/// What went wrong reading or using certificates. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Tls(String),
}

impl Error {
    fn file(path: &Path, message: impl fmt::Display) -> Error {
        Error::File {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// The files of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// PEM: this side's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA certificates a peer's certificate must chain to. `None` on a public
    /// listener, which asks clients for no certificate.
    pub ca: Option<PathBuf>,
}

impl Files {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// What [`Identity`] holds between two reloads.
struct Loaded {
    key: Arc<CertifiedKey>,
    /// Present when [`Files::ca`] is: checks servers (this side as a client) ...
    servers: Option<Arc<WebPkiServerVerifier>>,
    /// ... and clients (this side as a server).
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

/// A file's modification time and length: when either changes, the identity is read again.
type Stamp = Option<(SystemTime, u64)>;

/// A certificate, its key and optionally a CA, read from [`Files`] and read again when they
/// change. Shared by every config built from it.
pub struct Identity {
    files: Files,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    stamps: Mutex<Vec<Stamp>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The one crypto provider of the project.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const ALPN_HTTP1: &[u8] = b"http/1.1";

impl Identity {
    /// Read `files`; fails if any is missing or malformed, or if the key is not the
    /// certificate's.
    pub fn load(files: Files) -> Result<Arc<Identity>, Error> {
        let provider = provider();
        let stamps = stamps(&files);
        let loaded = load(&files, &provider)?;
        Ok(Arc::new(Identity {
            files,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            stamps: Mutex::new(stamps),
        }))
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Read the files again if any changed since the last read. `Ok(true)`: the new
    /// certificate (and CA) serve the next handshakes. On an error (e.g. a file caught half
    /// written) the identity keeps what it had and tries again at the next call.
    pub fn reload_if_changed(&self) -> Result<bool, Error> {
        let now = stamps(&self.files);
        if *self.stamps.lock().expect("stamps lock") == now {
            return Ok(false);
        }
        let loaded = load(&self.files, &self.provider)?;
        *self.current.write().expect("identity lock") = Arc::new(loaded);
        *self.stamps.lock().expect("stamps lock") = now;
        Ok(true)
    }

    fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("identity lock").clone()
    }

    /// A server's config: presents this certificate; requires clients' certificates chaining
    /// to the CA when the identity has one (mutual TLS), asks for none otherwise.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, Error> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let builder = match self.files.ca {
            Some(_) => builder.with_client_cert_verifier(self.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }

    /// A client's config for mutual TLS: presents this certificate, and accepts servers whose
    /// certificate chains to the CA and names the address dialled. Needs [`Files::ca`].
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, Error> {
        if self.files.ca.is_none() {
            return Err(Error::Tls(
                "a client identity needs the CA its servers' certificates chain to".into(),
            ));
        }
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_client_cert_resolver(self.clone());
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(config)
    }
}

/// A client's config that checks servers against the CA certificates in `ca` (a PEM file) and
/// presents no certificate: a shop's client of a gateway's HTTPS listener.
pub fn trusting(ca: &Path) -> Result<ClientConfig, Error> {
    let roots = roots(ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

fn stamps(files: &Files) -> Vec<Stamp> {
    files
        .paths()
        .map(|path| {
            let meta = fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn load(files: &Files, provider: &Arc<CryptoProvider>) -> Result<Loaded, Error> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| Error::file(&files.key, format!("no private key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| Error::file(&files.key, e))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| {
        Error::file(
            &files.key,
            format!("not the key of {}: {e}", files.cert.display()),
        )
    })?;
    let (servers, clients) = match &files.ca {
        None => (None, None),
        Some(ca) => {
            let roots = Arc::new(roots(ca)?);
            let servers =
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| Error::file(ca, e))?;
            let clients = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::file(ca, e))?;
            (Some(servers), Some(clients))
        }
    };
    Ok(Loaded {
        key: Arc::new(key),
        servers,
        clients,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::file(path, e))?;
    if chain.is_empty() {
        return Err(Error::file(path, "no certificate in the file"));
    }
    Ok(chain)
}

fn roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| Error::file(path, e))?;
    }
    Ok(roots)
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl Identity {
    fn servers(&self) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        self.current()
            .servers
            .clone()
            .ok_or_else(|| rustls::Error::General("no CA to check servers against".into()))
    }

    fn clients(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current()
            .clients
            .clone()
            .ok_or_else(|| rustls::Error::General("no CA to check clients against".into()))
    }
}

impl ServerCertVerifier for Identity {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.servers()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(&*self.servers()?, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(&*self.servers()?, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for Identity {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; nodes present their one certificate whatever the hints say.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.clients()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls12_signature(&*self.clients()?, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls13_signature(&*self.clients()?, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The acceptor of a server that uses `identity`.
pub fn acceptor(identity: &Arc<Identity>) -> Result<tokio_rustls::TlsAcceptor, Error> {
    Ok(tokio_rustls::TlsAcceptor::from(identity.server_config()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Authority;

    fn files(dir: &Path, name: &str) -> Files {
        Files {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            ca: Some(dir.join(authority::CA_CERT_FILE)),
        }
    }

    #[test]
    fn an_identity_reloads_only_when_its_files_change_and_keeps_the_old_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new("test CA").unwrap();
        ca.save(dir.path()).unwrap();
        let first = ca.issue("node", &["127.0.0.1".into()]).unwrap();
        first.save(dir.path(), "node").unwrap();
        let identity = Identity::load(files(dir.path(), "node")).unwrap();
        assert!(!identity.reload_if_changed().unwrap(), "nothing changed");
        let served = || identity.current().key.cert[0].clone();
        let before = served();

        // A certificate whose key is another's: refused, the old one kept.
        let second = ca.issue("node", &["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.path().join("node.pem"), &second.cert_pem).unwrap();
        let error = identity.reload_if_changed().unwrap_err();
        assert!(error.to_string().contains("not the key of"), "{error}");
        assert_eq!(served(), before);

        // Both files in place: the new certificate serves.
        second.save(dir.path(), "node").unwrap();
        assert!(identity.reload_if_changed().unwrap());
        assert_ne!(served(), before);
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = Identity::load(files(dir.path(), "absent")).unwrap_err();
        assert!(error.to_string().contains("absent.pem"), "{error}");
        std::fs::write(dir.path().join("ca.pem"), "").unwrap();
        let error = trusting(&dir.path().join("ca.pem")).unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
    }

    #[test]
    fn a_ca_read_back_from_its_files_signs_certificates_its_clients_accept() {
        let dir = tempfile::tempdir().unwrap();
        Authority::new("test CA").unwrap().save(dir.path()).unwrap();
        let reopened = Authority::open(dir.path()).unwrap();
        reopened
            .issue("node", &["10.0.0.1".into(), "node.internal".into()])
            .unwrap()
            .save(dir.path(), "node")
            .unwrap();
        let identity = Identity::load(files(dir.path(), "node")).unwrap();
        let chain = identity.current().key.cert.clone();
        let verifier = identity.servers().unwrap();
        for name in ["10.0.0.1", "node.internal"] {
            let name = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&chain[0], &[], &name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        let elsewhere = ServerName::try_from("10.0.0.2").unwrap();
        assert!(verifier
            .verify_server_cert(&chain[0], &[], &elsewhere, &[], UnixTime::now())
            .is_err());
    }
}
