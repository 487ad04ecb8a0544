//! A small certificate authority: what tests, the harness and `stockctl certs` use to make a
//! cluster's CA and its nodes' certificates. Keys are ECDSA P-256.
//!
//! A shop may as well use its own PKI: nodes only need PEM files ([`crate::Files`]).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// How long certificates made here are valid: a CA ten years, a leaf [`LEAF_DAYS`] days.
const CA_DAYS: i64 = 3650;
/// Days a node's or operator's certificate is valid; renew before (deploy/RUNBOOK.md).
pub const LEAF_DAYS: i64 = 398;

/// A CA: its certificate and key, in PEM.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

/// A certificate and its private key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = std::time::SystemTime::now();
    // An hour back, so a peer whose clock is a little behind accepts it at once.
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(days as u64 * 86_400)).into();
}

impl Authority {
    /// A new CA named `name` (its common name).
    pub fn new(name: &str) -> Result<Authority, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_DAYS);
        let key = KeyPair::generate().map_err(|e| err("CA key", e))?;
        let cert = params
            .clone()
            .self_signed(&key)
            .map_err(|e| err("CA certificate", e))?;
        Ok(Authority {
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// A CA read back from the PEM files [`Authority::save`] wrote.
    pub fn open(dir: &Path) -> Result<Authority, Error> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| Error::file(&cert_path, e))?;
        let key_pem = fs::read_to_string(&key_path).map_err(|e| Error::file(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| Error::file(&key_path, e))?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(|e| Error::file(&cert_path, e))?;
        Ok(Authority {
            params,
            key,
            cert_pem,
        })
    }

    /// The CA certificate, to install as `internal_ca_path` on every node (and to give clients
    /// that must trust a gateway's certificate made here).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Write `ca.pem` and `ca.key` (mode 0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        write(&dir.join(CA_CERT_FILE), &self.cert_pem, false)?;
        write(&dir.join(CA_KEY_FILE), &self.key.serialize_pem(), true)
    }

    /// A certificate for a node or an operator named `name` (its common name), valid for the
    /// IP addresses and DNS names in `addresses` (a peer dialling any of them accepts it), for
    /// both server and client authentication, signed by this CA.
    pub fn issue(&self, name: &str, addresses: &[String]) -> Result<Issued, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.subject_alt_names = addresses
            .iter()
            .map(|address| match address.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => address
                    .as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| err(&format!("name {address:?}"), e)),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        validity(&mut params, LEAF_DAYS);
        let key = KeyPair::generate().map_err(|e| err("key", e))?;
        let issuer = self
            .params
            .clone()
            .self_signed(&self.key)
            .map_err(|e| err("CA certificate", e))?;
        let cert = params
            .signed_by(&key, &issuer, &self.key)
            .map_err(|e| err("certificate", e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The file names [`Authority::save`] and [`Issued::save`] use.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

impl Issued {
    /// Write `<name>.pem` and `<name>.key` (mode 0600) into `dir`; returns their paths.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), Error> {
        fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        write(&cert, &self.cert_pem, false)?;
        write(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }
}

/// Write `text` to `path` through a temporary file and a rename, so a node reloading it never
/// reads half a file; private files are created readable by their owner only.
fn write(path: &Path, text: &str, private: bool) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let staged = path.with_extension("staged");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&staged)
        .map_err(|e| Error::file(&staged, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::file(&staged, e))?;
    fs::rename(&staged, path).map_err(|e| Error::file(path, e))
}
