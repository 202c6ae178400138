//! rustls configuration for channels and servers. PEM in, ALPN `h2` always.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::error::{Error, ErrorKind};

/// TLS settings of a channel.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsConfig {
    /// PEM root certificates to trust; `None` uses the system's roots.
    pub root_certs_pem: Option<Vec<u8>>,
    /// PEM certificate chain and private key for mutual TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to verify the server certificate against (and send as SNI),
    /// instead of the target's host. Also becomes the default `:authority`.
    pub server_name_override: Option<String>,
}

/// TLS settings of a server.
#[derive(Clone, Debug, Default)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert_chain_pem: Vec<u8>,
    /// PEM private key.
    pub private_key_pem: Vec<u8>,
    /// PEM roots to verify client certificates against (enables mTLS).
    pub client_ca_pem: Option<Vec<u8>>,
    /// With `client_ca_pem`: reject clients that present no certificate.
    pub require_client_cert: bool,
}

fn tls_err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Tls, msg)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut &pem[..]).collect();
    let certs = certs.map_err(|e| tls_err(format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate found in PEM"));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| tls_err(format!("invalid PEM private key: {e}")))?
        .ok_or_else(|| tls_err("no private key found in PEM"))
}

fn roots(pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for c in parse_certs(pem)? {
        store.add(c).map_err(|e| tls_err(format!("invalid root certificate: {e}")))?;
    }
    Ok(store)
}

fn system_roots() -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for c in loaded.certs {
        let _ = store.add(c);
    }
    if store.is_empty() {
        return Err(tls_err("no system root certificates found; pass root_certs_pem"));
    }
    Ok(store)
}

impl ClientTlsConfig {
    pub(crate) fn build(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let roots = match &self.root_certs_pem {
            Some(pem) => roots(pem)?,
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.identity_pem {
            Some((cert, key)) => builder
                .with_client_auth_cert(parse_certs(cert)?, parse_key(key)?)
                .map_err(|e| tls_err(format!("invalid client identity: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ServerTlsConfig {
    pub(crate) fn build(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?;
        let builder = match &self.client_ca_pem {
            Some(pem) => {
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(pem)?), provider());
                let v = if self.require_client_cert { v } else { v.allow_unauthenticated() };
                builder.with_client_cert_verifier(v.build().map_err(|e| tls_err(e.to_string()))?)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(parse_certs(&self.cert_chain_pem)?, parse_key(&self.private_key_pem)?)
            .map_err(|e| tls_err(format!("invalid server certificate or key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}
