//! The `[spectral]` config section, part of the same TOML file as `mim train` (the run config
//! holds it as its `spectral` field, so unknown keys and wrong types are reported there as
//! `spectral.<field>`).
//!
//! ```toml
//! [spectral]
//! T = "lal"          # preprocessing (see `preprocess`); default "loss" = the stage-1 loss
//! order = "auto"     # auto | largest | smallest | abs (auto: `largest` for lal, else `abs`)
//! shift = "auto"     # auto | none | mean: Xᵀdiag(T)X/n, or it − mean(T)·I (auto: none for loss:*)
//! k = 1              # eigenvectors taken (default r)
//! tau = 1.0          # threshold of `filtered`
//! method = "auto"    # auto (dense for d ≤ 2000) | dense | iterative
//! init_noise = 0.0   # method = "spectral_init" only: isotropic perturbation ε of each row
//! ```
//!
//! `mim train` reads the same section for `method = "spectral_init"` (W set from these
//! eigenvectors, then stage 2).

use crate::eigen::{Method, Order, Shift};
use crate::preprocess::{LabelPrep, Preprocessing};
use mim_data::loss::Stage1Labels;
use serde::{Deserialize, Serialize};

/// `spectral.order`: an [`Order`] or `auto` (the preprocessing's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderChoice {
    /// [`Preprocessing::default_order`].
    #[default]
    Auto,
    /// [`Order::Largest`].
    Largest,
    /// [`Order::Smallest`].
    Smallest,
    /// [`Order::Abs`].
    Abs,
}

/// `spectral.shift`: a [`Shift`] or `auto` (the preprocessing's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftChoice {
    /// [`Preprocessing::default_shift`]: `none` for `loss:*` (the network's twin), `mean`
    /// for the classical estimators.
    #[default]
    Auto,
    /// [`Shift::None`]: Xᵀdiag(T)X/n, the matrix stage 1 and power iteration iterate.
    None,
    /// [`Shift::Mean`]: Xᵀdiag(T)X/n − mean(T)·I, the classical spectral estimator.
    Mean,
}

impl ShiftChoice {
    fn is_auto(&self) -> bool {
        *self == ShiftChoice::Auto
    }
}

/// `[spectral]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpectralConfig {
    /// The preprocessing T (`loss`, `loss:square|huber|l1`, `identity`, `lal`, `filtered`,
    /// `clip:<c>`, `sign`).
    #[serde(rename = "T")]
    pub t: String,
    /// Which end of the spectrum.
    pub order: OrderChoice,
    /// Which matrix: with or without the identity shift mean(T)·I (left out of the TOML when
    /// `auto`, so configs written before the key existed keep their text).
    #[serde(skip_serializing_if = "ShiftChoice::is_auto")]
    pub shift: ShiftChoice,
    /// Number of eigenvectors (default r).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// τ of `filtered`: T(y) = 1{|y| > τ}.
    pub tau: f64,
    /// Eigen-solver.
    pub method: Method,
    /// `mim train` with `method = "spectral_init"` only: ε in w_j ∝ Vᵀc_j/‖c_j‖ + ε·g_j,
    /// g_j ~ N(0, I_d/d) (so ε is the perturbation's size relative to the unit signal part).
    pub init_noise: f64,
}

impl Default for SpectralConfig {
    fn default() -> Self {
        Self {
            t: "loss".into(),
            order: OrderChoice::Auto,
            shift: ShiftChoice::Auto,
            k: None,
            tau: 1.0,
            method: Method::Auto,
            init_noise: 0.0,
        }
    }
}

/// A validated `[spectral]` section with everything resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResolvedSpectral {
    /// T.
    pub preprocessing: Preprocessing,
    /// The end of the spectrum.
    pub order: Order,
    /// The matrix.
    pub shift: Shift,
    /// Eigenvectors taken.
    pub k: usize,
    /// The solver (`Dense` or `Iterative`).
    pub method: Method,
    /// The labels T sees.
    pub prep: LabelPrep,
}

impl ResolvedSpectral {
    /// `T = <name> on <centred|raw> labels, order = <order>, shift = <shift>`: the estimator in
    /// one line, as `mim spectral` and `mim theory` print it.
    pub fn describe(&self) -> String {
        format!(
            "T = {} on {} labels, order = {}, shift = {}",
            self.preprocessing.name(),
            if self.prep.center.is_some() {
                "centred"
            } else {
                "raw"
            },
            self.order.name(),
            self.shift.name()
        )
    }

    /// The whole estimator on a dataset: T applied to the labels per [`LabelPrep`], then
    /// [`crate::spectral_estimate`] with this order, shift, k and solver. `x` is n×d row-major.
    pub fn estimate(
        &self,
        x: &[f64],
        y: &[f64],
        d: usize,
    ) -> Result<crate::Spectrum, crate::SpectralError> {
        let t = crate::spectral_labels(&self.preprocessing, x, y, d, self.prep);
        crate::spectral_estimate(
            crate::Rows::Memory(x),
            d,
            &t,
            self.k,
            self.order,
            self.shift,
            self.method,
        )
    }
}

impl SpectralConfig {
    /// Validates against the run's r, d and `[stage1]`'s loss and label fields (for `loss:*`;
    /// `mim_train::Stage1Config::labels`). Errors name the field.
    pub fn resolve(
        &self,
        r: usize,
        d: usize,
        stage1: &Stage1Labels,
    ) -> Result<ResolvedSpectral, String> {
        if !(self.init_noise.is_finite() && self.init_noise >= 0.0) {
            return Err(format!(
                "spectral.init_noise = {}: must be ≥ 0 and finite",
                self.init_noise
            ));
        }
        if !(self.tau.is_finite() && self.tau >= 0.0) {
            return Err(format!(
                "spectral.tau = {}: must be ≥ 0 and finite",
                self.tau
            ));
        }
        let preprocessing = Preprocessing::parse(&self.t, stage1, self.tau)?;
        let k = self.k.unwrap_or(r);
        if k == 0 || k > d {
            return Err(format!("spectral.k = {k}: need 1 ≤ k ≤ data.d = {d}"));
        }
        let order = match self.order {
            OrderChoice::Auto => preprocessing.default_order(),
            OrderChoice::Largest => Order::Largest,
            OrderChoice::Smallest => Order::Smallest,
            OrderChoice::Abs => Order::Abs,
        };
        let shift = match self.shift {
            ShiftChoice::Auto => preprocessing.default_shift(),
            ShiftChoice::None => Shift::None,
            ShiftChoice::Mean => Shift::Mean,
        };
        Ok(ResolvedSpectral {
            preprocessing,
            order,
            shift,
            k,
            method: self.method.resolve(d),
            prep: LabelPrep::for_preprocessing(&preprocessing, stage1),
        })
    }

    /// This section with `order`, `shift`, `k` and `method` resolved (for the run folder's
    /// `config.toml`).
    pub fn resolved(&self, r: &ResolvedSpectral) -> SpectralConfig {
        SpectralConfig {
            t: self.t.clone(),
            order: match r.order {
                Order::Largest => OrderChoice::Largest,
                Order::Smallest => OrderChoice::Smallest,
                Order::Abs => OrderChoice::Abs,
            },
            shift: match r.shift {
                Shift::None => ShiftChoice::None,
                Shift::Mean => ShiftChoice::Mean,
            },
            k: Some(r.k),
            tau: self.tau,
            method: r.method,
            init_noise: self.init_noise,
        }
    }

    /// True for the defaults (a run config leaves the section out of `config.toml` then, so
    /// sweep point keys of runs that do not use it are unchanged).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::stage1_defaults;

    fn section(s: &str) -> SpectralConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn parses_and_resolves_the_section() {
        let c = section("T = \"lal\"\nk = 2\n");
        assert_eq!(c.t, "lal");
        assert!(!c.is_default() && SpectralConfig::default().is_default());
        let r = c.resolve(1, 5, &stage1_defaults()).unwrap();
        assert_eq!((r.k, r.order, r.method), (2, Order::Largest, Method::Dense));
        assert_eq!(r.shift, Shift::Mean);
        let again: SpectralConfig =
            toml::from_str(&toml::to_string(&c.resolved(&r)).unwrap()).unwrap();
        assert_eq!((again.k, again.shift), (Some(2), ShiftChoice::Mean));
        // `loss` is the network's twin: unshifted unless asked; `auto` is not written out.
        let twin = SpectralConfig::default().resolve(1, 5, &stage1_defaults());
        assert_eq!(twin.unwrap().shift, Shift::None);
        let classical = section("shift = \"mean\"").resolve(1, 5, &stage1_defaults());
        assert_eq!(classical.unwrap().shift, Shift::Mean);
        assert!(!toml::to_string(&SpectralConfig::default())
            .unwrap()
            .contains("shift"));
        assert_eq!(section(""), SpectralConfig::default());
        assert!(toml::from_str::<SpectralConfig>("foo = 1").is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let s1 = stage1_defaults();
        for (c, field) in [
            (
                SpectralConfig {
                    k: Some(0),
                    ..Default::default()
                },
                "spectral.k",
            ),
            (
                SpectralConfig {
                    tau: f64::NAN,
                    ..Default::default()
                },
                "spectral.tau",
            ),
            (
                SpectralConfig {
                    init_noise: -1.0,
                    ..Default::default()
                },
                "spectral.init_noise",
            ),
            (
                SpectralConfig {
                    t: "cube".into(),
                    ..Default::default()
                },
                "spectral.T",
            ),
        ] {
            let e = c.resolve(1, 10, &s1).unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
