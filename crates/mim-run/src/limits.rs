//! Resource limits checked before any data exist: the memory a run needs is estimated from
//! the resolved sizes and compared with a limit (`--max-memory`, by default 80 % of the
//! physical memory). A run that would not fit is refused up front (exit code 2) with the
//! estimate, instead of being killed by the OS half-way.

use crate::config::{ConfigError, ValidConfig};
use mim_model::Precision;

/// The memory a run may use.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimit {
    /// Bytes; `None` = no limit (the physical memory could not be read).
    pub bytes: Option<f64>,
    /// Where the limit comes from, for the error message.
    pub source: String,
}

impl MemoryLimit {
    /// The default limit: 80 % of the physical memory (MemTotal of /proc/meminfo), or no
    /// limit when that cannot be read.
    pub fn default_for_machine() -> MemoryLimit {
        MemoryLimit {
            bytes: crate::streaming::physical_memory_bytes().map(|ram| 0.8 * ram),
            source: "80% of RAM; raise it with --max-memory".into(),
        }
    }

    /// `--max-memory TEXT` if given (see [`parse_size`]), else [`MemoryLimit::default_for_machine`].
    pub fn from_option(text: Option<&str>) -> Result<MemoryLimit, ConfigError> {
        match text {
            None => Ok(Self::default_for_machine()),
            Some(t) => Ok(MemoryLimit {
                bytes: Some(parse_size(t)?),
                source: format!("--max-memory {}", t.trim()),
            }),
        }
    }
}

/// Parses a size such as `8GiB`, `500MiB`, `1.5G`, `2GB` or `123456` (bytes). `K`, `M`, `G`,
/// `T` with or without `iB` are binary (1024-based); `KB`, `MB`, `GB`, `TB` are decimal.
pub fn parse_size(text: &str) -> Result<f64, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "--max-memory {:?}: expected a positive size like 8GiB, 500MiB or 2000000000",
            text.chars().take(40).collect::<String>()
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.replace('_', "").parse().map_err(|_| bad())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0f64.powi(2),
        "g" | "gib" => 1024.0f64.powi(3),
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = value * factor;
    if bytes.is_finite() && bytes > 0.0 {
        Ok(bytes)
    } else {
        Err(bad())
    }
}

/// `1.5 GiB`, `312.0 MiB`, `4.0 KiB`.
pub fn format_bytes(bytes: f64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes / GIB)
    } else if bytes >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

/// The memory estimate of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryEstimate {
    /// Bytes in total.
    pub bytes: f64,
    /// How the estimate is made up, for the error message.
    pub formula: String,
}

/// Estimates the memory of a validated run. Held in memory: D1, D2 and the test set as
/// n·d floats of the dtype on the device plus their host f64 copies, the n×m activations of the
/// largest set (3 live copies), and the m×d weights (4 device copies: W, ∇W, the update, the
/// power iterate; plus 2 host f64 copies). Streamed: one chunk of rows instead of whole sets.
pub fn estimate_memory(valid: &ValidConfig) -> MemoryEstimate {
    let cfg = &valid.config;
    let (d, m) = (cfg.data.d as f64, cfg.model.width as f64);
    let dt = if cfg.dtype == Precision::F64 {
        8.0
    } else {
        4.0
    };
    // A deeper network: the activations of every hidden layer are live during a step, and
    // the weights are Σ_l m_l·m_{l−1} (m_0 = d); D3 is held too.
    let (m, weight_count, extra_rows) = match &cfg.model.mlp {
        None => (m, m * d, 0.0),
        Some(mlp) => {
            let mut fan_in = d;
            let mut count = 0.0;
            for &w in &mlp.widths {
                count += w as f64 * fan_in;
                fan_in = w as f64;
            }
            let m_all: f64 = mlp.widths.iter().map(|&w| w as f64).sum();
            (m_all, count, valid.n3 as f64 * d * (8.0 + dt))
        }
    };
    let weights = weight_count * (4.0 * dt + 16.0);
    if valid.streaming {
        let chunk = crate::streaming::chunk_rows(cfg.data.d, cfg.data.chunk_rows) as f64;
        let bytes = chunk * d * (8.0 + dt) + 3.0 * chunk * m * (8.0 + dt) + weights;
        MemoryEstimate {
            bytes,
            formula: format!(
                "streamed: chunk·d·({}+8) + 3·chunk·m·({}+8) + m·d weights, chunk = {chunk}",
                dt, dt
            ),
        }
    } else {
        let bytes = crate::streaming::in_memory_bytes(
            cfg.data.d,
            valid.n1,
            valid.n2,
            cfg.data.n_test,
            m as usize,
            dt as usize,
        ) + weights
            + extra_rows;
        MemoryEstimate {
            bytes,
            formula: format!(
                "(n1 + n2 + n_test)·d = {:.3e} values × ({} B on the device + 8 B on the host) + 3·n·m activations + m·d weights",
                (valid.n1 as f64 + valid.n2 as f64 + cfg.data.n_test as f64) * d,
                dt
            ),
        }
    }
}

/// Refuses a run whose estimate exceeds the limit: the error (exit code 2) gives the estimate,
/// its make-up and the limit.
pub fn check_memory(
    valid: &ValidConfig,
    limit: &MemoryLimit,
) -> Result<MemoryEstimate, ConfigError> {
    let est = estimate_memory(valid);
    match limit.bytes {
        Some(max) if est.bytes > max => {
            let hint = if valid.streaming {
                "use smaller sizes (data.d, model.width) or a smaller data.chunk_rows"
            } else {
                "use smaller sizes or data.streaming = \"on\" (CPU backends, layer-wise methods)"
            };
            Err(ConfigError(format!(
                "data: the run needs ≈ {} ({}) but the limit is {} ({}); {hint}",
                format_bytes(est.bytes),
                est.formula,
                format_bytes(max),
                limit.source
            )))
        }
        _ => Ok(est),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunConfig;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8GiB").unwrap(), 8.0 * (1u64 << 30) as f64);
        assert_eq!(parse_size("500MiB").unwrap(), 500.0 * (1u64 << 20) as f64);
        assert_eq!(parse_size("2GB").unwrap(), 2e9);
        assert_eq!(parse_size(" 1.5g ").unwrap(), 1.5 * (1u64 << 30) as f64);
        assert_eq!(parse_size("4096").unwrap(), 4096.0);
        for bad in ["", "GiB", "-1GiB", "0", "8 parsecs", "nan", "1e999"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.0.starts_with("--max-memory"), "{bad}: {err}");
        }
    }

    #[test]
    fn absurd_sizes_are_refused_with_the_estimate() {
        let mut c = RunConfig::default();
        c.data.d = 100_000;
        c.data.n1 = Some(1_000_000);
        c.data.streaming = crate::config::Streaming::Off;
        let v = c.validate().unwrap();
        let limit = MemoryLimit {
            bytes: Some(parse_size("8GiB").unwrap()),
            source: "--max-memory 8GiB".into(),
        };
        let err = check_memory(&v, &limit).unwrap_err();
        assert!(err.0.contains("GiB") && err.0.contains("8.0 GiB"), "{err}");
        assert!(!err.0.contains('\n'));
        let small = RunConfig::default().validate().unwrap();
        assert!(check_memory(&small, &limit).is_ok());
        let none = MemoryLimit {
            bytes: None,
            source: String::new(),
        };
        assert!(check_memory(&v, &none).is_ok());
    }
}
