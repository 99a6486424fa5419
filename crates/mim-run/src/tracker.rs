//! The metric tracker: an observer of stage 1 that measures W after each step (paper §6)
//! and hands one record per step to the [`Reporter`].

use crate::progress::Reporter;
use mim_metrics::{
    alignment, overlaps, subspace_cosines, AlignmentSummary, PowerIteration, RowMajor,
};
use mim_model::to_host;
use mim_train::{Observer, Stage1State, TrainError};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Metrics of the first-layer weights W against the hidden directions U.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WMetrics {
    /// mean_j ρ_j, ρ_j = ‖U w_j‖/‖w_j‖.
    pub alignment_mean: f64,
    /// median_j ρ_j.
    pub alignment_median: f64,
    /// Fraction of neurons with ρ_j > 0.9.
    pub frac_aligned_0_9: f64,
    /// Principal-angle cosines (descending) between span(Uᵀ) and the top-r right singular
    /// subspace of row-normalised W.
    pub subspace_cos: Vec<f64>,
    /// The smallest of them.
    pub subspace_cos_min: f64,
    /// ‖WUᵀ‖²_F/‖W‖²_F.
    pub energy_fraction: f64,
    /// MᵀM/m with M = WUᵀ (r×r, row-major).
    pub m_gram: Vec<f64>,
    /// Top eigenvalues of Q/m, Q = WWᵀ.
    pub q_spectrum: Vec<f64>,
}

/// Computes [`WMetrics`] for W (m×d) and U (r×d), row-major.
pub fn w_metrics(w: &[f64], m: usize, u: &[f64], r: usize, d: usize) -> Result<WMetrics, String> {
    let (w, u) = (RowMajor::new(w, m, d), RowMajor::new(u, r, d));
    let AlignmentSummary {
        alignment_mean,
        alignment_median,
        frac_aligned_0_9,
    } = alignment(w, u);
    let subspace_cos = subspace_cosines(w, u)?;
    let o = overlaps(w, u)?;
    Ok(WMetrics {
        alignment_mean,
        alignment_median,
        frac_aligned_0_9,
        subspace_cos_min: subspace_cos.last().copied().unwrap_or(0.0),
        subspace_cos,
        energy_fraction: o.energy_fraction,
        m_gram: o.m_gram,
        q_spectrum: o.q_spectrum,
    })
}

/// One line of `metrics.jsonl` for a first-layer step (stage 1, or the joint baseline).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage1Record {
    /// `"stage1"` (layer-wise) or `"joint"`.
    pub stage: String,
    /// Step t (0 = init).
    pub step: usize,
    /// L̂ on D1 at the W the step started from (null at step 0).
    pub loss: Option<f64>,
    /// ‖∇_W L̂‖_F used by the step (null at step 0).
    pub grad_norm: Option<f64>,
    /// W metrics after the step.
    #[serde(flatten)]
    pub w: WMetrics,
    /// mean_j cos(w_j(t), v_j(t)) against explicit power iterates (null when disabled).
    pub power_iteration_cos: Option<f64>,
    /// Seconds since stage 1 started.
    pub seconds: f64,
}

/// Measures W after each stage-1 step and reports it.
pub struct Stage1Tracker<'a> {
    /// U (r×d, row-major).
    pub u: &'a [f64],
    /// r.
    pub r: usize,
    /// d.
    pub d: usize,
    /// Explicit power iterates, if enabled.
    pub power: Option<PowerIteration>,
    /// Where records go.
    pub reporter: &'a mut Reporter,
    /// Start of stage 1.
    pub start: Instant,
    /// The last record.
    pub last: Option<Stage1Record>,
}

impl<'a> Stage1Tracker<'a> {
    /// A tracker for U (r×d) reporting to `reporter`, clock started now, no power iterates.
    pub fn new(u: &'a [f64], r: usize, d: usize, reporter: &'a mut Reporter) -> Self {
        Self {
            u,
            r,
            d,
            power: None,
            reporter,
            start: Instant::now(),
            last: None,
        }
    }
}

/// The first metric that is NaN/Inf (e.g. from a zero or overflowing row of W), if any.
pub fn first_non_finite(m: &WMetrics) -> Option<(&'static str, f64)> {
    [
        ("alignment_mean", m.alignment_mean),
        ("alignment_median", m.alignment_median),
        ("subspace_cos_min", m.subspace_cos_min),
        ("energy_fraction", m.energy_fraction),
    ]
    .into_iter()
    .chain(m.m_gram.iter().map(|&v| ("m_gram", v)))
    .chain(m.q_spectrum.iter().map(|&v| ("q_spectrum", v)))
    .find(|(_, v)| !v.is_finite())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl Observer for Stage1Tracker<'_> {
    fn stage1_step(&mut self, s: &Stage1State<'_>) -> Result<(), TrainError> {
        let m = s.w.dims()[0];
        let w = to_host(s.w.clone());
        let metrics =
            w_metrics(&w, m, self.u, self.r, self.d).map_err(|e| TrainError::Numerical {
                stage: "stage1".into(),
                message: format!("metrics at step {}: {e}", s.step),
            })?;
        if let Some((quantity, value)) = first_non_finite(&metrics) {
            return Err(TrainError::Diverged {
                stage: s.stage.into(),
                step: s.step,
                quantity: quantity.into(),
                value,
            });
        }
        let power_iteration_cos = match self.power.as_mut() {
            Some(p) => {
                if s.step > 0 {
                    p.step();
                }
                Some(p.mean_cosine(s.w))
            }
            None => None,
        };
        let record = Stage1Record {
            stage: s.stage.into(),
            step: s.step,
            loss: finite(s.loss),
            grad_norm: finite(s.grad_norm),
            w: metrics,
            power_iteration_cos,
            seconds: self.start.elapsed().as_secs_f64(),
        };
        self.reporter
            .stage1(&record, s.total)
            .map_err(|e| TrainError::Observer(format!("writing metrics.jsonl: {e}")))?;
        self.last = Some(record);
        Ok(())
    }
}
