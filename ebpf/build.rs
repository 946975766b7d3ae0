//! Building this crate depends on the `bpf-linker` binary, which cargo cannot express (artifact
//! dependencies cannot ask for `-Z build-std`). Rerunning when that binary changes is the
//! aya-template convention: a new linker then relinks the object.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
