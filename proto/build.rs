//! Compiles `switchboard/**/*.proto` with protox (no system protoc), writes the
//! descriptor sets that reflection serves, and generates the Rust clients and servers.

use std::path::{Path, PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    collect_protos(&root.join("switchboard"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=switchboard");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("switchboard_all.bin"), fds.encode_to_vec())?;

    // Reflection at the gateway lists only what clients may call: no internal packages.
    let mut public = fds.clone();
    public.file.retain(|f| !f.package().contains(".internal."));
    std::fs::write(out.join("switchboard_public.bin"), public.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
