//! Generates the Rust code of every contract. `protoc` comes from the
//! protoc-bin-vendored crate unless PROTOC is set, so a fresh machine needs
//! nothing installed.

const PROTOS: [&str; 8] = [
    "sipbus/admin/v1/admin.proto",
    "sipbus/edge/v1/edge.proto",
    "sipbus/extension/v1/registry.proto",
    "sipbus/pubsub/v1/subscription.proto",
    "sipbus/publish/v1/publication.proto",
    "sipbus/registrar/v1/registrar.proto",
    "sipbus/sdp/v1/sdp.proto",
    "sipbus/session/v1/supplement.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    config.bytes(["."]);
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure().compile_with_config(config, &PROTOS, &["."])?;
    Ok(())
}
