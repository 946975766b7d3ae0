//! Builds the XDP program (crate `ipwarden-ebpf`) with the nightly toolchain for
//! `bpfel-unknown-none` and leaves it at `$OUT_DIR/ipwarden`, where `dataplane::object` embeds it.
//!
//! With `AYA_BUILD_SKIP=1` aya-build builds nothing; we then write an empty object so that
//! `cargo check`, clippy and unprivileged tests work on machines without bpf-linker. Loading an
//! empty object fails at runtime with `DataplaneError::ObjectMissing`, never silently.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "ipwarden-ebpf")
        .ok_or_else(|| anyhow!("package ipwarden-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )?;

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    for name in [
        "ipwarden",
        "bench-pass",
        "bench-drop",
        "bench-tx",
        "bench-touch",
        "bench-sink",
    ] {
        let object = out_dir.join(name);
        if !object.exists() {
            fs::write(&object, []).with_context(|| format!("writing stub {}", object.display()))?;
        }
    }
    // The build id stamped on the pins and shown by `--version`: a hash of the object itself, so
    // two builds of the same source agree and any change to the program tells them apart.
    let object = out_dir.join("ipwarden");
    let bytes = fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    println!(
        "cargo:rustc-env=IPWARDEN_DATAPLANE_BUILD={:016x}",
        ipwarden_common::stamp::build_id(&bytes)
    );
    Ok(())
}
