//! The greeter example's shared pieces: `helloworld` messages and a demo CA.

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The unary method path.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";
/// A server-streaming method: one greeting per language.
pub const SAY_HELLO_STREAM: &str = "/helloworld.Greeter/SayHelloStreamReply";

/// `helloworld.proto` as an encoded `FileDescriptorSet`, for server
/// reflection (what `protoc --descriptor_set_out` would write).
pub fn descriptor_set() -> Vec<u8> {
    use prost::Message;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
        ServiceDescriptorProto,
    };
    let message = |name: &str, field: &str| DescriptorProto {
        name: Some(name.into()),
        field: vec![FieldDescriptorProto {
            name: Some(field.into()),
            json_name: Some(field.into()),
            number: Some(1),
            label: Some(Label::Optional as i32),
            r#type: Some(Type::String as i32),
            ..Default::default()
        }],
        ..Default::default()
    };
    let method = |name: &str, streaming: bool| MethodDescriptorProto {
        name: Some(name.into()),
        input_type: Some(".helloworld.HelloRequest".into()),
        output_type: Some(".helloworld.HelloReply".into()),
        server_streaming: Some(streaming),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("helloworld.proto".into()),
        package: Some("helloworld".into()),
        message_type: vec![message("HelloRequest", "name"), message("HelloReply", "message")],
        service: vec![ServiceDescriptorProto {
            name: Some("Greeter".into()),
            method: vec![method("SayHello", false), method("SayHelloStreamReply", true)],
            ..Default::default()
        }],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

/// Makes a throw-away CA and a server certificate for `localhost`, written
/// as `ca.pem`, `server.pem` and `server.key` into `dir`.
pub fn write_demo_certs(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    std::fs::create_dir_all(dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "grpc-core demo CA");
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
