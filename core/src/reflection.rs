//! Server reflection (`grpc.reflection.v1` and `v1alpha`), so grpcurl,
//! Postman and friends can list services and call methods without the
//! .proto files.
//!
//! Give [`ServerBuilder::with_reflection`](crate::server::ServerBuilder::with_reflection)
//! an encoded `FileDescriptorSet` (e.g. `protoc --include_imports
//! --descriptor_set_out=...`, or prost-build's `file_descriptor_set_path`).
//! Behaviour follows grpc-go's reflection service: `list_services` names every
//! service the server registered; a file answer carries the file and each of
//! its transitive dependencies not yet sent on this stream; what is unknown
//! gets an `error_response` with NOT_FOUND and the stream goes on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::error::Error;
use crate::server::ServerCall;
use crate::status::{Code, Status};

/// The reflection service names, v1 and v1alpha.
pub const SERVICE_V1: &str = "grpc.reflection.v1.ServerReflection";
/// The pre-standard name still used by older clients.
pub const SERVICE_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

#[derive(Clone, PartialEq, Message)]
struct ServerReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(oneof = "Request", tags = "3, 4, 5, 6, 7")]
    message_request: Option<Request>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Request {
    #[prost(string, tag = "3")]
    FileByFilename(String),
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
    #[prost(message, tag = "5")]
    FileContainingExtension(ExtensionRequest),
    #[prost(string, tag = "6")]
    AllExtensionNumbersOfType(String),
    #[prost(string, tag = "7")]
    ListServices(String),
}

#[derive(Clone, PartialEq, Message)]
struct ExtensionRequest {
    #[prost(string, tag = "1")]
    containing_type: String,
    #[prost(int32, tag = "2")]
    extension_number: i32,
}

#[derive(Clone, PartialEq, Message)]
struct ServerReflectionResponse {
    #[prost(string, tag = "1")]
    valid_host: String,
    #[prost(message, optional, tag = "2")]
    original_request: Option<ServerReflectionRequest>,
    #[prost(oneof = "Answer", tags = "4, 5, 6, 7")]
    message_response: Option<Answer>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Answer {
    #[prost(message, tag = "4")]
    Files(FileDescriptorResponse),
    #[prost(message, tag = "5")]
    ExtensionNumbers(ExtensionNumberResponse),
    #[prost(message, tag = "6")]
    Services(ListServiceResponse),
    #[prost(message, tag = "7")]
    Error(ErrorResponse),
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file_descriptor_proto: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct ExtensionNumberResponse {
    #[prost(string, tag = "1")]
    base_type_name: String,
    #[prost(int32, repeated, tag = "2")]
    extension_number: Vec<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceResponse {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ErrorResponse {
    #[prost(int32, tag = "1")]
    error_code: i32,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// The descriptors a reflection service answers from.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// File name → (encoded FileDescriptorProto, its dependencies).
    files: HashMap<String, (Vec<u8>, Vec<String>)>,
    /// Fully-qualified symbol (no leading dot) → file name.
    symbols: HashMap<String, String>,
    /// (extendee, field number) → file name.
    extensions: HashMap<(String, i32), String>,
    services: BTreeSet<String>,
}

impl Index {
    /// Adds every file of an encoded `FileDescriptorSet`.
    pub(crate) fn add_set(&mut self, encoded: &[u8]) -> Result<(), Error> {
        let set = FileDescriptorSet::decode(encoded)
            .map_err(|e| Error::invalid(format!("reflection: not a FileDescriptorSet: {e}")))?;
        if set.file.is_empty() {
            return Err(Error::invalid("reflection: the FileDescriptorSet has no files"));
        }
        for f in set.file {
            self.add_file(f);
        }
        Ok(())
    }

    fn add_file(&mut self, f: FileDescriptorProto) {
        let name = f.name().to_string();
        let pkg = f.package().to_string();
        let q = |n: &str| if pkg.is_empty() { n.to_string() } else { format!("{pkg}.{n}") };
        let mut symbols = Vec::new();
        for s in &f.service {
            let svc = q(s.name());
            self.services.insert(svc.clone());
            for m in &s.method {
                symbols.push(format!("{svc}.{}", m.name()));
            }
            symbols.push(svc);
        }
        for m in &f.message_type {
            collect_message(&q(m.name()), m, &mut symbols, &mut self.extensions, &name);
        }
        for e in &f.enum_type {
            let en = q(e.name());
            for v in &e.value {
                symbols.push(format!("{}.{}", pkg_of(&en), v.name()));
            }
            symbols.push(en);
        }
        for x in &f.extension {
            symbols.push(q(x.name()));
            self.extensions.insert((x.extendee().trim_start_matches('.').to_string(), x.number()), name.clone());
        }
        if !pkg.is_empty() {
            // A package name is a symbol too (grpcurl asks for it); the first file wins.
            self.symbols.entry(pkg.clone()).or_insert_with(|| name.clone());
        }
        for s in symbols {
            self.symbols.insert(s, name.clone());
        }
        let deps = f.dependency.clone();
        self.files.insert(name, (f.encode_to_vec(), deps));
    }

    /// The file `name` and its transitive dependencies not in `sent`.
    fn file_closure(&self, name: &str, sent: &mut HashSet<String>) -> Option<Vec<Vec<u8>>> {
        self.files.get(name)?;
        let mut out = Vec::new();
        let mut todo = vec![name.to_string()];
        let mut first = true;
        while let Some(n) = todo.pop() {
            let Some((bytes, deps)) = self.files.get(&n) else { continue };
            // The requested file always goes out; dependencies once per stream.
            if !sent.insert(n.clone()) && !first {
                continue;
            }
            first = false;
            out.push(bytes.clone());
            todo.extend(deps.iter().cloned());
        }
        Some(out)
    }
}

fn pkg_of(full: &str) -> &str {
    full.rsplit_once('.').map(|(p, _)| p).unwrap_or("")
}

fn collect_message(
    full: &str,
    m: &DescriptorProto,
    out: &mut Vec<String>,
    extensions: &mut HashMap<(String, i32), String>,
    file: &str,
) {
    out.push(full.to_string());
    for f in &m.field {
        out.push(format!("{full}.{}", f.name()));
    }
    for n in &m.nested_type {
        collect_message(&format!("{full}.{}", n.name()), n, out, extensions, file);
    }
    for e in &m.enum_type {
        out.push(format!("{full}.{}", e.name()));
    }
    for x in &m.extension {
        out.push(format!("{full}.{}", x.name()));
        extensions.insert((x.extendee().trim_start_matches('.').to_string(), x.number()), file.to_string());
    }
}

/// The reflection handler over `index`, listing `services` (every service
/// the server has, the reflection services included).
pub(crate) fn handler(
    index: Arc<Index>,
    services: Arc<Vec<String>>,
) -> impl Fn(ServerCall) -> crate::server::HandlerFuture + Send + Sync + 'static {
    move |call: ServerCall| {
        let index = index.clone();
        let services = services.clone();
        Box::pin(serve(call, index, services))
    }
}

async fn serve(mut call: ServerCall, index: Arc<Index>, services: Arc<Vec<String>>) -> Status {
    let mut sent = HashSet::new();
    loop {
        let msg = match call.recv().await {
            Ok(Some(m)) => m,
            Ok(None) => return Status::ok(),
            Err(s) => return s,
        };
        let req = match ServerReflectionRequest::decode(msg) {
            Ok(r) => r,
            Err(e) => return Status::invalid_argument(format!("invalid reflection request: {e}")),
        };
        let not_found =
            |what: String| Answer::Error(ErrorResponse { error_code: Code::NotFound.as_i32(), error_message: what });
        let files = |r: Option<Vec<Vec<u8>>>, what: String| match r {
            Some(f) => Answer::Files(FileDescriptorResponse { file_descriptor_proto: f }),
            None => not_found(what),
        };
        let resp = match &req.message_request {
            None => return Status::invalid_argument("reflection request without a message_request"),
            Some(Request::ListServices(_)) => Answer::Services(ListServiceResponse {
                service: services.iter().map(|s| ServiceResponse { name: s.clone() }).collect(),
            }),
            Some(Request::FileByFilename(n)) => files(index.file_closure(n, &mut sent), format!("file not found: {n}")),
            Some(Request::FileContainingSymbol(s)) => {
                let s = s.trim_start_matches('.');
                let r = index.symbols.get(s).and_then(|f| index.file_closure(f, &mut sent));
                files(r, format!("symbol not found: {s}"))
            }
            Some(Request::FileContainingExtension(x)) => {
                let key = (x.containing_type.trim_start_matches('.').to_string(), x.extension_number);
                let r = index.extensions.get(&key).and_then(|f| index.file_closure(f, &mut sent));
                files(r, format!("extension not found: {}({})", x.containing_type, x.extension_number))
            }
            Some(Request::AllExtensionNumbersOfType(t)) => {
                let t = t.trim_start_matches('.');
                if index.symbols.contains_key(t) {
                    let mut nums: Vec<i32> = index.extensions.keys().filter(|(e, _)| e == t).map(|(_, n)| *n).collect();
                    nums.sort_unstable();
                    Answer::ExtensionNumbers(ExtensionNumberResponse {
                        base_type_name: t.to_string(),
                        extension_number: nums,
                    })
                } else {
                    not_found(format!("type not found: {t}"))
                }
            }
        };
        let out = ServerReflectionResponse {
            valid_host: req.host.clone(),
            original_request: Some(req),
            message_response: Some(resp),
        };
        if let Err(s) = call.send(Bytes::from(out.encode_to_vec())).await {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallOptions, Channel, ChannelOptions, MethodKind, Server, ServerOptions};
    use prost_types::{
        field_descriptor_proto::Type, FieldDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
    };

    fn field(name: &str, n: i32, ty: Type, type_name: Option<&str>, extendee: Option<&str>) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(n),
            r#type: Some(ty as i32),
            type_name: type_name.map(Into::into),
            extendee: extendee.map(Into::into),
            ..Default::default()
        }
    }

    /// common.proto (package common: message Base, extensible) and
    /// svc.proto (package demo: Req{Base base}, Resp, service Svc{Do, Stream},
    /// extension common.Base.tag = 100).
    fn descriptor_set() -> Vec<u8> {
        let common = FileDescriptorProto {
            name: Some("common.proto".into()),
            package: Some("common".into()),
            message_type: vec![DescriptorProto {
                name: Some("Base".into()),
                field: vec![field("id", 1, Type::Int64, None, None)],
                ..Default::default()
            }],
            ..Default::default()
        };
        let svc = FileDescriptorProto {
            name: Some("svc.proto".into()),
            package: Some("demo".into()),
            dependency: vec!["common.proto".into()],
            message_type: vec![
                DescriptorProto {
                    name: Some("Req".into()),
                    field: vec![field("base", 1, Type::Message, Some(".common.Base"), None)],
                    nested_type: vec![DescriptorProto { name: Some("Inner".into()), ..Default::default() }],
                    ..Default::default()
                },
                DescriptorProto { name: Some("Resp".into()), ..Default::default() },
            ],
            service: vec![ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: vec![
                    MethodDescriptorProto {
                        name: Some("Do".into()),
                        input_type: Some(".demo.Req".into()),
                        output_type: Some(".demo.Resp".into()),
                        ..Default::default()
                    },
                    MethodDescriptorProto {
                        name: Some("Stream".into()),
                        input_type: Some(".demo.Req".into()),
                        output_type: Some(".demo.Resp".into()),
                        server_streaming: Some(true),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            extension: vec![field("tag", 100, Type::String, None, Some(".common.Base"))],
            ..Default::default()
        };
        FileDescriptorSet { file: vec![common, svc] }.encode_to_vec()
    }

    fn names(r: &ServerReflectionResponse) -> Vec<String> {
        match &r.message_response {
            Some(Answer::Files(f)) => f
                .file_descriptor_proto
                .iter()
                .map(|b| FileDescriptorProto::decode(&b[..]).unwrap().name().to_string())
                .collect(),
            other => panic!("expected files, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_every_request_kind_on_v1_and_v1alpha() {
        assert!(Server::builder(ServerOptions::default()).with_reflection(b"\xff\xff").is_err());
        let server = Server::builder(ServerOptions::default())
            .register("/demo.Svc/Do", MethodKind::Unary, |_c: ServerCall| async { Status::ok() })
            .unwrap()
            .with_reflection(&descriptor_set())
            .unwrap()
            .build()
            .unwrap();
        let addr = server.bind("127.0.0.1:0").await.unwrap();
        server.start();
        let ch = Channel::new(&addr.to_string(), ChannelOptions::default()).unwrap();
        for svc in [SERVICE_V1, SERVICE_V1ALPHA] {
            let mut call = ch.call(&format!("/{svc}/ServerReflectionInfo"), CallOptions::default()).await.unwrap();
            let mut ask = async |r: Request| -> ServerReflectionResponse {
                let req = ServerReflectionRequest { host: "h".into(), message_request: Some(r) };
                call.send(Bytes::from(req.encode_to_vec())).await.unwrap();
                let resp = ServerReflectionResponse::decode(call.recv().await.unwrap().unwrap()).unwrap();
                assert_eq!(resp.original_request.as_ref().unwrap(), &req);
                assert_eq!(resp.valid_host, "h");
                resp
            };
            let r = ask(Request::ListServices(String::new())).await;
            let Some(Answer::Services(l)) = r.message_response else { panic!("{r:?}") };
            let listed: Vec<_> = l.service.into_iter().map(|s| s.name).collect();
            assert_eq!(listed, ["demo.Svc", SERVICE_V1, SERVICE_V1ALPHA]);
            // The file and its dependency, then only the file (the dependency was sent).
            assert_eq!(
                names(&ask(Request::FileContainingSymbol("demo.Svc".into())).await),
                ["svc.proto", "common.proto"]
            );
            assert_eq!(names(&ask(Request::FileContainingSymbol(".demo.Svc.Stream".into())).await), ["svc.proto"]);
            assert_eq!(names(&ask(Request::FileContainingSymbol("demo.Req.Inner".into())).await), ["svc.proto"]);
            assert_eq!(names(&ask(Request::FileByFilename("common.proto".into())).await), ["common.proto"]);
            assert_eq!(names(&ask(Request::FileContainingSymbol("common".into())).await), ["common.proto"]);
            let x = ExtensionRequest { containing_type: "common.Base".into(), extension_number: 100 };
            assert_eq!(names(&ask(Request::FileContainingExtension(x)).await), ["svc.proto"]);
            let r = ask(Request::AllExtensionNumbersOfType("common.Base".into())).await;
            let Some(Answer::ExtensionNumbers(n)) = r.message_response else { panic!("{r:?}") };
            assert_eq!((n.base_type_name.as_str(), n.extension_number), ("common.Base", vec![100]));
            // Unknown things: NOT_FOUND in the stream, which goes on.
            for bad in [
                Request::FileContainingSymbol("demo.Nope".into()),
                Request::FileByFilename("nope.proto".into()),
                Request::AllExtensionNumbersOfType("demo.Nope".into()),
            ] {
                let r = ask(bad).await;
                let Some(Answer::Error(e)) = r.message_response else { panic!("{r:?}") };
                assert_eq!(e.error_code, Code::NotFound.as_i32());
            }
            call.close_send().await.unwrap();
            assert!(call.finish().await.is_ok());
        }
        server.shutdown(std::time::Duration::from_secs(1)).await;
    }
}
