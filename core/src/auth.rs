//! Auth: per-call credentials on the client ([`CallCredentials`]) and the
//! peer's identity on the server ([`AuthContext`]).
//!
//! Call credentials are metadata providers run for every call attempt, after
//! the client interceptors, with the call's method and authority. They are
//! refused on a plaintext channel (UNAUTHENTICATED, as grpc-go) unless the
//! channel opts in with `ChannelOptions::allow_insecure_call_credentials`.
//! A provider's error status ends the call; codes that a control plane must
//! not produce (gRFC A54: INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
//! FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, DATA_LOSS) become INTERNAL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::metadata::Metadata;
use crate::status::{Code, Status};

/// A boxed future returned by providers and interceptors.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a credentials provider is told about the call.
#[derive(Clone, Debug)]
pub struct AuthMetadataContext {
    /// `https://<authority>/<package.Service>` (grpc-go's and grpcio's `service_url`).
    pub service_url: String,
    /// The method's short name (`SayHello`).
    pub method_name: String,
    /// The full method path (`/package.Service/Method`).
    pub method: String,
    /// The `:authority` of the call.
    pub authority: String,
}

impl AuthMetadataContext {
    pub(crate) fn new(scheme: &str, authority: &str, method: &str) -> AuthMetadataContext {
        let trimmed = method.strip_prefix('/').unwrap_or(method);
        let (service, name) = trimmed.rsplit_once('/').unwrap_or((trimmed, ""));
        let scheme = if scheme == "http" { "http" } else { "https" };
        AuthMetadataContext {
            service_url: format!("{scheme}://{authority}/{service}"),
            method_name: name.to_string(),
            method: method.to_string(),
            authority: authority.to_string(),
        }
    }
}

/// A per-call metadata provider (an OAuth token source, an HMAC signer...).
pub trait MetadataProvider: Send + Sync + 'static {
    /// The metadata to add to one call attempt.
    fn metadata(&self, ctx: &AuthMetadataContext) -> BoxFuture<'static, Result<Metadata, Status>>;
}

impl<F, Fut> MetadataProvider for F
where
    F: Fn(&AuthMetadataContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Metadata, Status>> + Send + 'static,
{
    fn metadata(&self, ctx: &AuthMetadataContext) -> BoxFuture<'static, Result<Metadata, Status>> {
        Box::pin(self(ctx))
    }
}

/// Call credentials: one or more metadata providers, applied in order.
/// Cheap to clone. Compose channel-wide and per-call credentials with
/// [`CallCredentials::compose`] (or set both: a call uses the channel's, then its own).
#[derive(Clone)]
pub struct CallCredentials {
    providers: Arc<[Arc<dyn MetadataProvider>]>,
    names: Arc<[String]>,
}

impl std::fmt::Debug for CallCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CallCredentials").field(&self.names).finish()
    }
}

impl CallCredentials {
    /// A provider of your own.
    pub fn from_provider(provider: impl MetadataProvider) -> CallCredentials {
        CallCredentials {
            providers: Arc::new([Arc::new(provider) as Arc<dyn MetadataProvider>]),
            names: Arc::new(["plugin".into()]),
        }
    }

    /// An async function of the call's [`AuthMetadataContext`].
    pub fn from_fn<F, Fut>(f: F) -> CallCredentials
    where
        F: Fn(&AuthMetadataContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Metadata, Status>> + Send + 'static,
    {
        CallCredentials::from_provider(f)
    }

    /// `authorization: Bearer <token>` on every call (grpcio's `access_token_call_credentials`).
    pub fn access_token(token: &str) -> Result<CallCredentials, crate::Error> {
        let mut md = Metadata::new();
        md.insert("authorization", format!("Bearer {token}"))?;
        let md = Arc::new(md);
        let mut c = CallCredentials::from_fn(move |_: &AuthMetadataContext| {
            let md = md.clone();
            async move { Ok((*md).clone()) }
        });
        c.names = Arc::new(["access_token".into()]);
        Ok(c)
    }

    /// Both: `self`'s metadata, then `other`'s.
    pub fn compose(&self, other: &CallCredentials) -> CallCredentials {
        CallCredentials {
            providers: self.providers.iter().chain(other.providers.iter()).cloned().collect(),
            names: self.names.iter().chain(other.names.iter()).cloned().collect(),
        }
    }

    /// Runs every provider; the metadata of all, or the first error.
    pub async fn metadata(&self, ctx: &AuthMetadataContext) -> Result<Metadata, Status> {
        let mut out = Metadata::new();
        for p in self.providers.iter() {
            let md = p.metadata(ctx).await.map_err(restrict_code)?;
            out.extend(md);
        }
        Ok(out)
    }
}

/// gRFC A54: codes a credentials plugin must not produce become INTERNAL.
fn restrict_code(st: Status) -> Status {
    match st.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Status::internal(format!(
            "illegal status code from call credentials; original status: {:?}: {}",
            st.code(),
            st.message()
        )),
        _ => st,
    }
}

/// The peer of a server call: address, transport security and the verified
/// client certificate's identity. Readable by handlers and interceptors.
#[derive(Clone, Debug, Default)]
pub struct AuthContext {
    peer: String,
    tls_version: Option<String>,
    cert_chain: Vec<Vec<u8>>,
    subject: Option<String>,
    common_name: Option<String>,
    sans: Vec<String>,
}

impl AuthContext {
    pub(crate) fn new(peer: String, tls: Option<(String, Vec<Vec<u8>>)>) -> AuthContext {
        let mut ctx = AuthContext { peer, ..Default::default() };
        if let Some((version, chain)) = tls {
            ctx.tls_version = Some(version);
            if let Some(leaf) = chain.first() {
                if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) {
                    ctx.subject = Some(cert.subject().to_string());
                    ctx.common_name =
                        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
                    if let Ok(Some(san)) = cert.subject_alternative_name() {
                        ctx.sans = san.value.general_names.iter().filter_map(general_name).collect();
                    }
                }
            }
            ctx.cert_chain = chain;
        }
        ctx
    }

    /// The peer's address (`ip:port` or `unix:path`).
    pub fn peer(&self) -> &str {
        &self.peer
    }
    /// `"ssl"` over TLS, else `"insecure"` (grpcio's `transport_security_type`).
    pub fn transport_security_type(&self) -> &str {
        if self.tls_version.is_some() {
            "ssl"
        } else {
            "insecure"
        }
    }
    /// The negotiated TLS version (`TLSv1_3`), over TLS.
    pub fn tls_version(&self) -> Option<&str> {
        self.tls_version.as_deref()
    }
    /// True when the client presented a certificate that the server verified.
    pub fn is_peer_authenticated(&self) -> bool {
        !self.cert_chain.is_empty()
    }
    /// The client certificate chain (DER, leaf first).
    pub fn peer_certificates(&self) -> &[Vec<u8>] {
        &self.cert_chain
    }
    /// The client certificate's subject (RFC 4514 form, `CN=client,O=Example`).
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// The subject's common name.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }
    /// The subject alternative names (DNS names, URIs, e-mail addresses, IPs).
    pub fn subject_alt_names(&self) -> &[String] {
        &self.sans
    }
    /// The peer identity, as gRPC core defines it: the SANs if any, else the CN.
    pub fn peer_identity(&self) -> Vec<&str> {
        if !self.sans.is_empty() {
            self.sans.iter().map(String::as_str).collect()
        } else {
            self.common_name.iter().map(String::as_str).collect()
        }
    }
    /// The name of the identity property (`x509_subject_alternative_name` or `x509_common_name`).
    pub fn peer_identity_property_name(&self) -> Option<&'static str> {
        if !self.sans.is_empty() {
            Some("x509_subject_alternative_name")
        } else if self.common_name.is_some() {
            Some("x509_common_name")
        } else {
            None
        }
    }
    /// Every property under gRPC core's names (what grpcio's
    /// `ServicerContext.auth_context()` returns): `transport_security_type`,
    /// `security_level`, `x509_common_name`, `x509_subject`,
    /// `x509_subject_alternative_name` (one entry each), `x509_pem_cert`.
    pub fn properties(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![("transport_security_type", self.transport_security_type().as_bytes().to_vec())];
        if self.tls_version.is_some() {
            out.push(("security_level", b"TSI_PRIVACY_AND_INTEGRITY".to_vec()));
        }
        if let Some(cn) = &self.common_name {
            out.push(("x509_common_name", cn.as_bytes().to_vec()));
        }
        if let Some(s) = &self.subject {
            out.push(("x509_subject", s.as_bytes().to_vec()));
        }
        for san in &self.sans {
            out.push(("x509_subject_alternative_name", san.as_bytes().to_vec()));
        }
        if let Some(leaf) = self.cert_chain.first() {
            out.push(("x509_pem_cert", pem_encode(leaf).into_bytes()));
        }
        out
    }
}

fn general_name(n: &x509_parser::extensions::GeneralName<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    match n {
        GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => Some(s.to_string()),
        GeneralName::IPAddress(b) => match b.len() {
            4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
            16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_url_and_method_name() {
        let c = AuthMetadataContext::new("https", "example.com:443", "/pkg.Svc/Do");
        assert_eq!(c.service_url, "https://example.com:443/pkg.Svc");
        assert_eq!(c.method_name, "Do");
    }

    #[test]
    fn a54_codes_become_internal() {
        assert_eq!(restrict_code(Status::invalid_argument("x")).code(), Code::Internal);
        assert_eq!(restrict_code(Status::new(Code::Unauthenticated, "x")).code(), Code::Unauthenticated);
        assert_eq!(restrict_code(Status::unavailable("x")).code(), Code::Unavailable);
    }

    #[test]
    fn identity_from_a_client_certificate() {
        let mut p = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "the client");
        p.subject_alt_names.push(rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let ctx = AuthContext::new("1.2.3.4:5".into(), Some(("TLSv1_3".into(), vec![cert.der().to_vec()])));
        assert_eq!(ctx.transport_security_type(), "ssl");
        assert_eq!(ctx.common_name(), Some("the client"));
        assert_eq!(ctx.subject_alt_names(), ["client.example", "10.1.2.3"]);
        assert_eq!(ctx.peer_identity(), ["client.example", "10.1.2.3"]);
        assert!(ctx.subject().unwrap().contains("CN=the client"));
        let props = ctx.properties();
        assert!(props.iter().any(|(k, v)| *k == "x509_pem_cert" && v.starts_with(b"-----BEGIN CERTIFICATE-----")));
        let plain = AuthContext::new("1.2.3.4:5".into(), None);
        assert_eq!(plain.transport_security_type(), "insecure");
        assert!(plain.peer_identity().is_empty());
    }
}
