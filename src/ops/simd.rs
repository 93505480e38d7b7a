//! The instruction set the CPU kernels run with, chosen at run time: the best the CPU has,
//! or a lower one named by the environment variable `CTA2MBF_SIMD` (`avx512`, `avx2` or
//! `scalar`), so an AVX-512 machine can measure and test what an AVX2-only one runs. A name
//! above what the CPU has falls back to the best it has. (The `gemm` crate's products choose
//! their own kernels; on x86-64 without a nightly compiler they are AVX2 + FMA on both kinds
//! of CPU.)

use std::sync::OnceLock;

/// An instruction set of the hand-vectorized kernels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust, whatever the compiler's baseline target allows (SSE2 on x86-64).
    Scalar,
    /// AVX2 + FMA: eight lanes.
    Avx2,
    /// AVX-512F (with AVX2 + FMA, which every such CPU has): sixteen lanes.
    Avx512,
}

impl Level {
    /// The best level this CPU runs.
    pub fn detected() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Scalar
    }

    /// Every level this CPU runs, lowest first (what the tests compare).
    pub fn available() -> Vec<Level> {
        [Level::Scalar, Level::Avx2, Level::Avx512].into_iter().filter(|l| *l <= Level::detected()).collect()
    }

    /// The level named by `CTA2MBF_SIMD`-style text, capped at what the CPU runs.
    fn requested(name: &str) -> Option<Level> {
        let wanted = match name.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => return Some(Level::detected()),
            "scalar" => Level::Scalar,
            "avx2" => Level::Avx2,
            "avx512" => Level::Avx512,
            _ => return None,
        };
        Some(wanted.min(Level::detected()))
    }

    /// The level the kernels use in this process (read once).
    pub fn current() -> Level {
        static LEVEL: OnceLock<Level> = OnceLock::new();
        *LEVEL.get_or_init(|| match std::env::var("CTA2MBF_SIMD") {
            Ok(name) => Level::requested(&name).unwrap_or_else(|| {
                eprintln!("warning: CTA2MBF_SIMD={name:?} is not one of auto, avx512, avx2, scalar: using {:?}", Level::detected());
                Level::detected()
            }),
            Err(_) => Level::detected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_level_is_capped_at_the_cpus() {
        assert_eq!(Level::requested("auto"), Some(Level::detected()));
        assert_eq!(Level::requested("SCALAR"), Some(Level::Scalar));
        assert_eq!(Level::requested("avx512"), Some(Level::detected().min(Level::Avx512)));
        assert_eq!(Level::requested("neon"), None);
        assert_eq!(Level::available().first(), Some(&Level::Scalar));
        assert_eq!(Level::available().last(), Some(&Level::detected()));
    }
}
