//! Message compression algorithms and `grpc-accept-encoding` negotiation.

use std::io::{Read, Write};

use bytes::Bytes;

use crate::status::Status;

/// A message encoding (`grpc-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// zlib-wrapped deflate (RFC 1950), as gRPC's "deflate".
    Deflate,
    /// Zstandard (RFC 8878), beyond what grpc-go and grpc-java ship.
    Zstd,
}

impl Compression {
    /// Every encoding this engine supports.
    pub const ALL: [Compression; 4] =
        [Compression::Identity, Compression::Gzip, Compression::Deflate, Compression::Zstd];

    /// The `grpc-encoding` name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
            Compression::Zstd => "zstd",
        }
    }

    /// Looks up an encoding by name.
    pub fn from_name(name: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.name() == name.trim())
    }

    pub(crate) fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::Identity => Ok(data.to_vec()),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), flate2::Compression::fast());
                e.write_all(data)?;
                e.finish()
            }
            Compression::Deflate => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::with_capacity(data.len() / 2), flate2::Compression::fast());
                e.write_all(data)?;
                e.finish()
            }
            Compression::Zstd => zstd::bulk::compress(data, 1),
        }
    }

    /// Decompresses, failing with RESOURCE_EXHAUSTED past `limit` bytes and
    /// INTERNAL on corrupt input.
    pub(crate) fn decompress(self, data: &[u8], limit: usize) -> Result<Bytes, Status> {
        let mut out = Vec::new();
        let cap = (limit as u64).saturating_add(1);
        let res = match self {
            Compression::Identity => return Ok(Bytes::copy_from_slice(data)),
            Compression::Gzip => flate2::read::GzDecoder::new(data).take(cap).read_to_end(&mut out),
            Compression::Deflate => flate2::read::ZlibDecoder::new(data).take(cap).read_to_end(&mut out),
            Compression::Zstd => zstd::stream::read::Decoder::new(data).and_then(|d| d.take(cap).read_to_end(&mut out)),
        };
        res.map_err(|e| Status::internal(format!("grpc: failed to decompress the received message: {e}")))?;
        if out.len() > limit {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message after decompression larger than max {limit}"
            )));
        }
        Ok(Bytes::from(out))
    }
}

/// The `grpc-accept-encoding` value we advertise.
pub(crate) fn accept_encoding_header() -> &'static str {
    "identity,gzip,deflate,zstd"
}

/// Parses a peer's `grpc-accept-encoding` list, keeping the ones we know.
pub(crate) fn parse_accept_encoding(v: &str) -> Vec<Compression> {
    v.split(',').filter_map(Compression::from_name).collect()
}
