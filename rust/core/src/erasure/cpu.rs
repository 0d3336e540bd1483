//! The Reed-Solomon crate compiles its C kernels (`simd-accel`) for one `-march` chosen at
//! build time, with no run-time dispatch: on a CPU without the instructions that march
//! allows, the first coding call dies of SIGILL. [`check`] runs before a coder is made and
//! turns that into a typed error. The release wheel builds the kernels for x86-64-v2 (see
//! docs/RELEASE.md); a source build keeps the crate's default, haswell.

use crate::error::{CoreError, Result};

/// The `-march` the kernels were compiled for (`RUST_REED_SOLOMON_ERASURE_ARCH` at build
/// time; the crate's default is haswell).
pub const KERNEL_ARCH: &str = env!("I6P_RS_KERNEL_ARCH");

/// x86-64-v2's features beyond the x86-64 baseline.
const V2: &[&str] = &["cmpxchg16b", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"];
/// Haswell's (x86-64-v3's) features beyond v2.
const V3: &[&str] = &[
    "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "lzcnt", "movbe",
];

/// The CPU features code compiled for `arch` may use; empty when not known (`native` is
/// built where it runs; other names are not checked).
pub fn required(arch: &str) -> Vec<&'static str> {
    match arch {
        "x86-64-v2" | "nehalem" => V2.to_vec(),
        "x86-64-v3" | "haswell" => V2.iter().chain(V3).copied().collect(),
        _ => Vec::new(),
    }
}

/// Whether this CPU has `feature` (one of [`required`]'s names); true off x86-64.
fn has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "cmpxchg16b" => std::arch::is_x86_feature_detected!("cmpxchg16b"),
            "popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
            "sse3" => std::arch::is_x86_feature_detected!("sse3"),
            "sse4.1" => std::arch::is_x86_feature_detected!("sse4.1"),
            "sse4.2" => std::arch::is_x86_feature_detected!("sse4.2"),
            "ssse3" => std::arch::is_x86_feature_detected!("ssse3"),
            "avx" => std::arch::is_x86_feature_detected!("avx"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "bmi1" => std::arch::is_x86_feature_detected!("bmi1"),
            "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
            "f16c" => std::arch::is_x86_feature_detected!("f16c"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "lzcnt" => std::arch::is_x86_feature_detected!("lzcnt"),
            "movbe" => std::arch::is_x86_feature_detected!("movbe"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        true
    }
}

/// The features `arch` needs that this CPU lacks.
pub fn missing(arch: &str) -> Vec<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    required(arch).into_iter().filter(|f| !has(f)).collect()
}

/// Fails when this CPU lacks what the compiled kernels use.
pub fn check() -> Result<()> {
    let lacking = missing(KERNEL_ARCH);
    if lacking.is_empty() {
        return Ok(());
    }
    Err(CoreError::UnsupportedCpu(format!(
        "the Reed-Solomon kernels were built for {KERNEL_ARCH}, and this CPU lacks {}; \
         rebuild with RUST_REED_SOLOMON_ERASURE_ARCH=native",
        lacking.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_arch_asks_for_what_it_allows() {
        assert!(required("x86-64-v2").contains(&"ssse3"));
        assert!(!required("x86-64-v2").contains(&"avx2"));
        assert!(required("haswell").contains(&"avx2") && required("haswell").contains(&"ssse3"));
        assert!(required("native").is_empty() && required("x86-64").is_empty());
        // Every name asked for is one `has` knows (an unknown one would read as missing).
        for f in required("haswell") {
            assert!(V2.contains(&f) || V3.contains(&f));
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_cpu_passes_for_the_baseline_and_the_check_names_what_lacks() {
        // Every x86-64 CPU this runs on since 2009 has v2.
        assert_eq!(missing("x86-64-v2"), Vec::<&str>::new());
        assert!(check().is_ok(), "{:?}", missing(KERNEL_ARCH));
        for f in V3 {
            assert_eq!(
                has(f),
                !missing("haswell").contains(f),
                "{f}: `missing` and `has` disagree"
            );
        }
    }
}
