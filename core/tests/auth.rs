//! Auth: call credentials (access token, metadata plugins, composition,
//! plaintext refusal, errors, deadlines) and the server's auth context
//! (TLS, mTLS identity), plus an auth-checking server interceptor.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::auth::{AuthMetadataContext, CallCredentials};
use grpc_core::interceptor::{CallObserver, ServerCallHead, ServerInterceptor};
use grpc_core::server::ServerBuilder;
use grpc_core::{
    CallOptions, Channel, ChannelOptions, ClientTlsConfig, Code, Metadata, MethodKind, Server, ServerCall,
    ServerOptions, ServerTlsConfig, Status,
};

/// A server whose `/auth.S/Who` answers with what it saw: the request's
/// `authorization` and `x-*` metadata as response trailers, and the auth
/// context as a message `key=value` per line. Counts handler runs.
fn who_server(opts: ServerOptions, runs: Arc<AtomicUsize>) -> ServerBuilder {
    Server::builder(opts)
        .register("/auth.S/Who", MethodKind::Unary, move |mut call: ServerCall| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = call.recv().await;
                let ctx = call.auth_context().clone();
                let mut lines = vec![
                    format!("type={}", ctx.transport_security_type()),
                    format!("peer={}", ctx.peer()),
                    format!("tls={}", ctx.tls_version().unwrap_or("-")),
                    format!("cn={}", ctx.common_name().unwrap_or("-")),
                    format!("ids={}", ctx.peer_identity().join(",")),
                    format!("authenticated={}", ctx.is_peer_authenticated()),
                ];
                for (k, v) in ctx.properties() {
                    if k != "x509_pem_cert" {
                        lines.push(format!("{k}={}", String::from_utf8_lossy(&v)));
                    }
                }
                let mut trailers = Metadata::new();
                for (k, v) in call.metadata().iter() {
                    if k == "authorization" || k.starts_with("x-") {
                        trailers.insert(format!("echo-{k}"), v.as_str().unwrap_or("").to_string()).unwrap();
                    }
                }
                if let Err(s) = call.send(Bytes::from(lines.join("\n"))).await {
                    return s;
                }
                Status::ok().with_metadata(trailers)
            }
        })
        .unwrap()
}

fn tls_server_opts(pki: &Pki, client_ca: bool) -> ServerOptions {
    ServerOptions {
        tls: Some(ServerTlsConfig {
            cert_chain_pem: pki.server_cert_pem.clone().into_bytes(),
            private_key_pem: pki.server_key_pem.clone().into_bytes(),
            client_ca_pem: client_ca.then(|| pki.ca_pem.clone().into_bytes()),
            require_client_cert: client_ca,
        }),
        ..Default::default()
    }
}

fn tls_channel_opts(pki: &Pki, identity: bool) -> ChannelOptions {
    ChannelOptions {
        tls: Some(ClientTlsConfig {
            root_certs_pem: Some(pki.ca_pem.clone().into_bytes()),
            identity_pem: identity
                .then(|| (pki.client_cert_pem.clone().into_bytes(), pki.client_key_pem.clone().into_bytes())),
            server_name_override: Some(SERVER_NAME.to_string()),
        }),
        ..Default::default()
    }
}

async fn who(ch: &Channel, opts: CallOptions) -> Result<(String, Metadata), Status> {
    let r = bounded("Who", ch.unary("/auth.S/Who", Bytes::new(), opts)).await?;
    Ok((String::from_utf8(r.message.to_vec()).unwrap(), r.trailing_metadata))
}

fn field<'a>(report: &'a str, key: &str) -> Vec<&'a str> {
    report.lines().filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).collect()
}

#[tokio::test]
async fn access_token_reaches_the_server_over_tls() {
    let pki = pki();
    let runs = Arc::new(AtomicUsize::new(0));
    let (server, addr) = start(who_server(tls_server_opts(&pki, false), runs.clone())).await;
    let ch = Channel::new(
        &addr,
        ChannelOptions {
            call_credentials: Some(CallCredentials::access_token("s3cret").unwrap()),
            ..tls_channel_opts(&pki, false)
        },
    )
    .unwrap();
    let (report, trailers) = who(&ch, CallOptions::default()).await.unwrap();
    assert_eq!(trailers.get("echo-authorization"), Some("Bearer s3cret"));
    assert_eq!(field(&report, "type"), ["ssl"]);
    assert_eq!(field(&report, "authenticated"), ["false"], "no client certificate was presented");
    assert!(field(&report, "tls")[0].starts_with("TLSv1_"), "{report}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn call_credentials_are_refused_on_plaintext_unless_allowed() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (server, addr) = start(who_server(ServerOptions::default(), runs.clone())).await;
    let token = CallCredentials::access_token("s3cret").unwrap();
    // Channel-wide credentials on a plaintext channel.
    let ch =
        Channel::new(&addr, ChannelOptions { call_credentials: Some(token.clone()), ..Default::default() }).unwrap();
    let err = who(&ch, CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("insecure"), "{err}");
    // Per-call credentials too.
    let plain = channel(&addr);
    let err = who(&plain, CallOptions { credentials: Some(token.clone()), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = plain.call("/auth.S/Who", CallOptions { credentials: Some(token.clone()), ..Default::default() }).await;
    assert_eq!(err.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing reached the server");
    // The explicit opt-in sends them.
    let ch = Channel::new(
        &addr,
        ChannelOptions { call_credentials: Some(token), allow_insecure_call_credentials: true, ..Default::default() },
    )
    .unwrap();
    let (report, trailers) = who(&ch, CallOptions::default()).await.unwrap();
    assert_eq!(trailers.get("echo-authorization"), Some("Bearer s3cret"));
    assert_eq!(field(&report, "type"), ["insecure"]);
    assert_eq!(field(&report, "ids"), [""]);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_metadata_plugin_sees_the_call_and_composes_with_per_call_credentials() {
    let pki = pki();
    let (server, addr) = start(who_server(tls_server_opts(&pki, false), Default::default())).await;
    let seen: Arc<Mutex<Vec<AuthMetadataContext>>> = Default::default();
    let s = seen.clone();
    let plugin = CallCredentials::from_fn(move |ctx: &AuthMetadataContext| {
        s.lock().unwrap().push(ctx.clone());
        let method = ctx.method_name.clone();
        async move {
            // An async provider: it yields before answering.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut md = Metadata::new();
            md.insert("x-signed", format!("sig-for-{method}")).unwrap();
            Ok(md)
        }
    });
    let ch = Channel::new(&addr, ChannelOptions { call_credentials: Some(plugin), ..tls_channel_opts(&pki, false) })
        .unwrap();
    let per_call = CallCredentials::access_token("per-call").unwrap();
    let (_, trailers) = who(&ch, CallOptions { credentials: Some(per_call), ..Default::default() }).await.unwrap();
    assert_eq!(trailers.get("echo-x-signed"), Some("sig-for-Who"));
    assert_eq!(trailers.get("echo-authorization"), Some("Bearer per-call"));
    let ctx = seen.lock().unwrap()[0].clone();
    assert_eq!(ctx.method, "/auth.S/Who");
    assert_eq!(ctx.method_name, "Who");
    assert_eq!(ctx.authority, SERVER_NAME);
    assert_eq!(ctx.service_url, format!("https://{SERVER_NAME}/auth.S"));
    // compose() gives the same result as channel + call credentials.
    let both = CallCredentials::access_token("a").unwrap().compose(&CallCredentials::from_fn(
        |_: &AuthMetadataContext| async {
            let mut md = Metadata::new();
            md.insert("x-two", "2").unwrap();
            Ok(md)
        },
    ));
    let (_, trailers) =
        who(&channel_with(&addr, &pki), CallOptions { credentials: Some(both), ..Default::default() }).await.unwrap();
    assert_eq!(trailers.get("echo-authorization"), Some("Bearer a"));
    assert_eq!(trailers.get("echo-x-two"), Some("2"));
    server.shutdown(Duration::from_secs(1)).await;
}

fn channel_with(addr: &str, pki: &Pki) -> Channel {
    Channel::new(addr, tls_channel_opts(pki, false)).unwrap()
}

#[tokio::test]
async fn plugin_errors_and_slow_plugins_end_the_call() {
    let pki = pki();
    let runs = Arc::new(AtomicUsize::new(0));
    let (server, addr) = start(who_server(tls_server_opts(&pki, false), runs.clone())).await;
    let ch = channel_with(&addr, &pki);
    let failing = |st: Status| CallOptions {
        credentials: Some(CallCredentials::from_fn(move |_: &AuthMetadataContext| {
            let st = st.clone();
            async move { Err(st) }
        })),
        ..Default::default()
    };
    let err = who(&ch, failing(Status::unavailable("token service down"))).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unavailable, "token service down"));
    let err = who(&ch, failing(Status::new(Code::Unauthenticated, "expired"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // gRFC A54: a control-plane-illegal code becomes INTERNAL.
    let err = who(&ch, failing(Status::invalid_argument("bad scope"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("bad scope"), "{err}");
    // A provider slower than the deadline: DEADLINE_EXCEEDED on time.
    let slow = CallCredentials::from_fn(|_: &AuthMetadataContext| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Metadata::new())
    });
    let t0 = std::time::Instant::now();
    let opts = CallOptions { credentials: Some(slow), timeout: Some(Duration::from_millis(200)), ..Default::default() };
    let err = who(&ch, opts).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn mtls_identity_is_visible_to_the_handler() {
    let pki = pki();
    let (server, addr) = start(who_server(tls_server_opts(&pki, true), Default::default())).await;
    let ch = Channel::new(&addr, tls_channel_opts(&pki, true)).unwrap();
    let (report, _) = who(&ch, CallOptions::default()).await.unwrap();
    assert_eq!(field(&report, "type"), ["ssl"]);
    assert_eq!(field(&report, "authenticated"), ["true"]);
    assert_eq!(field(&report, "cn"), ["test client"]);
    assert_eq!(field(&report, "ids"), ["client.test.example"], "SANs win over the CN");
    assert_eq!(field(&report, "x509_common_name"), ["test client"]);
    assert_eq!(field(&report, "x509_subject_alternative_name"), ["client.test.example"]);
    assert_eq!(field(&report, "security_level"), ["TSI_PRIVACY_AND_INTEGRITY"]);
    assert!(field(&report, "x509_subject")[0].contains("CN=test client"), "{report}");
    assert!(field(&report, "peer")[0].starts_with("127.0.0.1:"), "{report}");
    server.shutdown(Duration::from_secs(1)).await;
}

/// Checks `authorization` and the client certificate: no token →
/// UNAUTHENTICATED, a wrong one → PERMISSION_DENIED.
struct TokenCheck;

impl ServerInterceptor for TokenCheck {
    fn intercept<'a>(
        &'a self,
        head: &'a mut ServerCallHead,
    ) -> grpc_core::auth::BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        Box::pin(async move {
            match head.metadata.get("authorization") {
                None => Err(Status::new(Code::Unauthenticated, "missing token")),
                Some("Bearer good") if head.auth.is_peer_authenticated() => {
                    head.metadata.insert("x-user", head.auth.common_name().unwrap_or("?").to_string()).unwrap();
                    Ok(None)
                }
                Some(_) => Err(Status::new(Code::PermissionDenied, "not allowed")),
            }
        })
    }
}

#[tokio::test]
async fn a_server_interceptor_rejects_unauthenticated_and_forbidden_calls() {
    let pki = pki();
    let runs = Arc::new(AtomicUsize::new(0));
    let (server, addr) = start(who_server(tls_server_opts(&pki, true), runs.clone()).intercept(TokenCheck)).await;
    let ch = Channel::new(&addr, tls_channel_opts(&pki, true)).unwrap();
    let err = who(&ch, CallOptions::default()).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unauthenticated, "missing token"));
    let bad = CallOptions { credentials: Some(CallCredentials::access_token("bad").unwrap()), ..Default::default() };
    assert_eq!(who(&ch, bad).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "rejected calls never reach the handler");
    let good = CallOptions { credentials: Some(CallCredentials::access_token("good").unwrap()), ..Default::default() };
    let (_, trailers) = who(&ch, good).await.unwrap();
    assert_eq!(trailers.get("echo-x-user"), Some("test client"), "the handler sees the interceptor's metadata");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.shutdown(Duration::from_secs(1)).await;
}
