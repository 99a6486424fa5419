//! The metric tracker: an observer of stage 1 that measures W after each step (paper §6)
//! and hands one record per step to the [`Reporter`].

use crate::progress::Reporter;
use mim_data::{HierarchicalG, Target};
use mim_metrics::{
    alignment_of, direction_recovery, principal_cosines, quadratic_oracle_error,
    w_spectra_with_norms, AlignmentSummary, DirectionRecovery, PowerIteration, Projections,
    RowMajor, SvdMethod,
};
use mim_model::to_host_into;
use mim_train::{Observer, Stage1State, TrainError};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Metrics of the first-layer weights W against the hidden directions U.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// π_k = ‖P u_k‖², P the projection on the same top-r subspace, k = 1..r (seed 003).
    pub direction_projection: Vec<f64>,
    /// #{k : π_k > 1/2}.
    pub directions_recovered: usize,
    /// Σ_k a_k² (1 − π_k) / Σ_k a_k² (uniform weights unless the link is hierarchical).
    pub weighted_subspace_error: f64,
    /// For `hierarchical(…, g=h2)` links: the excess risk of the best quadratic readout on the
    /// same subspace, relative to Var f* (see [`mim_metrics::quadratic_oracle_error`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_excess_risk: Option<f64>,
    /// ‖WUᵀ‖²_F/‖W‖²_F.
    pub energy_fraction: f64,
    /// MᵀM/m with M = WUᵀ (r×r, row-major).
    pub m_gram: Vec<f64>,
    /// Top eigenvalues of Q/m, Q = WWᵀ.
    pub q_spectrum: Vec<f64>,
}

/// The weights a_k² of `weighted_subspace_error` (empty = uniform) and, for a `g = h2`
/// hierarchical link, the coefficients of the quadratic oracle readout.
pub fn direction_weights(target: &Target) -> (Vec<f64>, Option<Vec<f64>>) {
    match target.link.hierarchical() {
        Some(h) => {
            let a = h.coefficients();
            let oracle = (h.g == HierarchicalG::H2).then(|| a.clone());
            (a.iter().map(|v| v * v).collect(), oracle)
        }
        None => (Vec::new(), None),
    }
}

/// What a learned span (orthonormal columns V, d×p) recovers of the target: principal
/// cosines against span(Uᵀ) and the per-direction metrics of seed 003.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanMetrics {
    /// Principal-angle cosines (descending, length r) between span(Uᵀ) and span(V).
    pub subspace_cos: Vec<f64>,
    /// π_k = ‖Vᵀu_k‖², k = 1..r.
    pub direction_projection: Vec<f64>,
    /// #{k : π_k > 1/2}.
    pub directions_recovered: usize,
    /// Σ_k a_k² (1 − π_k) / Σ_k a_k² (uniform weights unless the link is hierarchical).
    pub weighted_subspace_error: f64,
    /// For `hierarchical(…, g=h2)` links: the excess risk of the best quadratic readout on
    /// span(V), relative to Var f*.
    pub oracle_excess_risk: Option<f64>,
}

/// [`SpanMetrics`] of span(V) (d×p, orthonormal or zero columns) against the target.
pub fn span_metrics(target: &Target, span: &faer::Mat<f64>) -> Result<SpanMetrics, String> {
    let u = RowMajor::new(&target.u, target.r, target.d);
    let (weights, oracle) = direction_weights(target);
    let DirectionRecovery {
        direction_projection,
        directions_recovered,
        weighted_subspace_error,
    } = direction_recovery(u, span, &weights);
    Ok(SpanMetrics {
        subspace_cos: principal_cosines(u, span)?,
        direction_projection,
        directions_recovered,
        weighted_subspace_error,
        oracle_excess_risk: oracle.map(|c| quadratic_oracle_error(u, span, &c)),
    })
}

/// The BBP predictions of seed 003 at α = n/d for a hierarchical target ([`mim_data::Bbp`]),
/// written next to the measured [`SpanMetrics`] so a plot can overlay them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BbpTheory {
    /// α_k = E\[y²\]/(μ₂² a_k²), k = 1..K.
    pub bbp_alpha_k: Vec<f64>,
    /// max(0, 1 − α_k/α), k = 1..K.
    pub theory_direction_projection: Vec<f64>,
    /// #{k : α > 2α_k}.
    pub theory_directions_recovered: usize,
    /// E_th(α) = Σ_k a_k² min(1, α_k/α) / Σ_k a_k².
    pub theory_weighted_subspace_error: f64,
}

/// [`BbpTheory`] at `alpha` when the target's link is `hierarchical(…)`.
pub fn bbp_theory(target: &Target, alpha: f64) -> Option<BbpTheory> {
    let h = target.link.hierarchical()?;
    let b = mim_data::Bbp::new(h, target.scale, target.noise);
    Some(BbpTheory {
        theory_direction_projection: b.projection(alpha),
        theory_directions_recovered: b.recovered(alpha),
        theory_weighted_subspace_error: b.subspace_error(alpha),
        bbp_alpha_k: b.alpha_k,
    })
}

/// Computes [`WMetrics`] for W (m×d, row-major) against the target's U (r×d); the learned
/// span is the top-r right singular subspace of row-normalised W, found by `svd` (as is the
/// spectrum of Q).
pub fn w_metrics(w: &[f64], m: usize, target: &Target, svd: SvdMethod) -> Result<WMetrics, String> {
    let (r, d) = (target.r, target.d);
    let (w, u) = (RowMajor::new(w, m, d), RowMajor::new(&target.u, r, d));
    let projections = Projections::new(w, u);
    let AlignmentSummary {
        alignment_mean,
        alignment_median,
        frac_aligned_0_9,
    } = alignment_of(&projections);
    let spectra = w_spectra_with_norms(w, &projections.norm2, r, r + 2, svd)?;
    let SpanMetrics {
        subspace_cos,
        direction_projection,
        directions_recovered,
        weighted_subspace_error,
        oracle_excess_risk,
    } = span_metrics(target, &spectra.span)?;
    let o = projections.overlaps(&spectra.values);
    Ok(WMetrics {
        alignment_mean,
        alignment_median,
        frac_aligned_0_9,
        subspace_cos_min: subspace_cos.last().copied().unwrap_or(0.0),
        subspace_cos,
        direction_projection,
        directions_recovered,
        weighted_subspace_error,
        oracle_excess_risk,
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
    /// The target (U, and the link for the direction weights).
    pub target: &'a Target,
    /// Explicit power iterates, if enabled.
    pub power: Option<PowerIteration>,
    /// How the W metrics find the top singular subspaces (`metrics.svd`).
    pub svd: SvdMethod,
    /// Where records go.
    pub reporter: &'a mut Reporter,
    /// Start of stage 1.
    pub start: Instant,
    /// The last record.
    pub last: Option<Stage1Record>,
    /// W on the host, refilled at every step.
    host_w: Vec<f64>,
}

impl<'a> Stage1Tracker<'a> {
    /// A tracker for the target's U reporting to `reporter`, W metrics by `svd`, clock
    /// started now, no power iterates.
    pub fn new(target: &'a Target, reporter: &'a mut Reporter, svd: SvdMethod) -> Self {
        Self {
            target,
            power: None,
            svd,
            reporter,
            start: Instant::now(),
            last: None,
            host_w: Vec::new(),
        }
    }
}

/// The first metric that is NaN/Inf (e.g. from a zero or overflowing row of W), if any.
pub fn first_non_finite(m: &WMetrics) -> Option<(&'static str, f64)> {
    [
        ("alignment_mean", m.alignment_mean),
        ("alignment_median", m.alignment_median),
        ("subspace_cos_min", m.subspace_cos_min),
        ("weighted_subspace_error", m.weighted_subspace_error),
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
        to_host_into(s.w, &mut self.host_w);
        let metrics = w_metrics(&self.host_w, m, self.target, self.svd).map_err(|e| {
            TrainError::Numerical {
                stage: "stage1".into(),
                message: format!("metrics at step {}: {e}", s.step),
            }
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
