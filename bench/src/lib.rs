//! Side-by-side benchmarks of grpc-core and its peers: the shared pieces of
//! the load driver and of the Rust servers (ours, tonic, a raw HTTP/2
//! reference). `bench/run.py` starts every peer's server and drives it with
//! `bench-driver`; `bench/README.md` says how.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Messages generated from `bench/proto` (prost 0.14), with tonic's service code.
pub mod pb {
    /// `helloworld.Greeter`: `SayHello`.
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod helloworld {
        tonic::include_proto!("helloworld");
    }
    /// `bench.Echo`: `Unary` and `Stream`.
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod echo {
        tonic::include_proto!("bench");
    }
}

/// `helloworld.Greeter/SayHello`.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";
/// `bench.Echo/Unary`: echoes one message of any size.
pub const ECHO_UNARY: &str = "/bench.Echo/Unary";
/// `bench.Echo/Stream`: bidi, one response per request.
pub const ECHO_STREAM: &str = "/bench.Echo/Stream";

/// The largest message every server accepts and sends (64 MiB).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The flags every Rust server takes (the other peers take the same).
#[derive(clap::Parser, Debug)]
pub struct ServerArgs {
    /// Port on 127.0.0.1; 0 picks a free one. The server prints `PORT <n>`.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Serve TLS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

/// Announces the listening port on stdout, the way every peer does.
pub fn announce_port(port: u16) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PORT {port}");
    let _ = out.flush();
}

/// Waits for SIGTERM or SIGINT.
pub async fn until_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A process's CPU and memory as `/proc` reports them.
pub mod procfs {
    use super::*;

    /// USER_HZ: the unit of the times in `/proc/PID/stat`; fixed at 100 on
    /// Linux whatever the kernel's HZ.
    const USER_HZ: u64 = 100;

    /// utime + stime of every thread of `pid` (live and exited), from
    /// `/proc/PID/stat`. `pid` may be `"self"`.
    pub fn cpu_time(pid: &str) -> std::io::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may contain spaces: fields are counted after ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ')' field 0 is `state` (field 3 overall): utime is field 14, stime 15.
        let parse = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ticks = parse(11) + parse(12);
        Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
    }

    /// Resident set size in bytes, from `/proc/PID/status`.
    pub fn rss_bytes(pid: &str) -> std::io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(kb * 1024)
    }
}

/// Writes a throw-away CA and a `localhost` certificate into `dir`:
/// `ca.pem`, `server.pem`, `server.key`.
pub fn write_certs(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "grpc-core bench CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()])?;
    leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("server.pem"), leaf.pem())?;
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem())?;
    Ok(())
}

/// A rustls server configuration (ALPN h2) from PEM files, for the raw h2 reference.
pub fn rustls_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, Box<dyn std::error::Error>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or("no private key in the key file")?;
    let mut cfg =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}
