//! Records which `-march` the Reed-Solomon crate compiles its C kernels for (it reads
//! `RUST_REED_SOLOMON_ERASURE_ARCH`, default haswell), so the coder can check at run time
//! that the CPU has what they use (see `erasure::cpu`).

fn main() {
    println!("cargo:rerun-if-env-changed=RUST_REED_SOLOMON_ERASURE_ARCH");
    let arch = std::env::var("RUST_REED_SOLOMON_ERASURE_ARCH").unwrap_or_else(|_| "haswell".into());
    println!("cargo:rustc-env=I6P_RS_KERNEL_ARCH={arch}");
}
