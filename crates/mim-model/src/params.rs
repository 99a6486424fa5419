//! Parameter groups of any Burn module, by module path: listing them, resolving the names a
//! schedule stage gives (`train = ["w"]`, `reinit = { "layers.0.bias" = "gaussian" }`) into a
//! Burn [`ParamGroup`], freezing everything outside a group, and overwriting parameters with
//! host values (re-initialisations, a fitted readout).
//!
//! A name selects a parameter when it equals the parameter's path (`layers.1.weight`) or is a
//! prefix of it at a `.` boundary (`layers.1` selects `layers.1.weight` and `layers.1.bias`).
//! Parameters under a `norm` path component (frozen per-unit standardisations) are selected
//! only by their exact path, never by a prefix.

use crate::host::{to_host, Precision};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup};
use burn::tensor::{DType, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One float parameter of a module: its path and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// Dotted Burn module path, e.g. `layers.0.weight`.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
}

#[derive(Default)]
struct PathVisitor {
    path: Vec<String>,
    found: Vec<ParamInfo>,
}

impl ModuleVisitor for PathVisitor {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.found.push(ParamInfo {
            path: self.path.join("."),
            shape: param.val().dims().to_vec(),
        });
    }
}

/// Every float parameter of `module`, in visiting order.
pub fn param_infos<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut v = PathVisitor::default();
    module.visit(&mut v);
    v.found
}

fn selects(name: &str, path: &str) -> bool {
    if name == path {
        return true;
    }
    let Some(rest) = path.strip_prefix(name) else {
        return false;
    };
    rest.starts_with('.') && !path.split('.').any(|part| part == "norm")
}

/// The parameter paths `names` select (sorted, deduplicated). An empty list, or a name that
/// selects nothing, is an error naming `field` and listing the module's parameters.
pub fn resolve_paths<M: Module>(
    module: &M,
    names: &[String],
    field: &str,
) -> Result<Vec<String>, String> {
    let infos = param_infos(module);
    let all = || {
        infos
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names.is_empty() {
        return Err(format!(
            "{field} = []: names no parameter group (this network has: {})",
            all()
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let hit: Vec<String> = infos
            .iter()
            .filter(|p| selects(name, &p.path))
            .map(|p| p.path.clone())
            .collect();
        if hit.is_empty() {
            return Err(format!(
                "{field}: unknown parameter group `{name}` (this network has: {})",
                all()
            ));
        }
        out.extend(hit);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The Burn [`ParamGroup`] of exactly these parameter paths.
pub fn group(paths: &[String]) -> ParamGroup {
    ParamGroup::from_paths(paths.to_vec())
}

/// `module` with exactly the parameters at `paths` requiring gradients and every other one
/// frozen, through Burn's `set_require_grad_group`.
pub fn train_only<M: Module>(module: M, paths: &[String]) -> M {
    module
        .set_require_grad_group(ParamGroup::all(), false)
        .set_require_grad_group(group(paths), true)
}

/// How a re-initialisation redraws a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reinit {
    /// Every entry N(0, 1).
    Gaussian,
    /// Every entry U[−1, 1].
    Uniform,
    /// Every entry 0.
    Zero,
}

impl Reinit {
    /// `len` values drawn from `seed` (ChaCha8, in order; the same draw as the stage-2 bias
    /// re-draw of the two-layer algorithm for `Gaussian` and `Uniform`).
    pub fn draw(self, len: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match self {
            Reinit::Gaussian => (0..len).map(|_| StandardNormal.sample(&mut rng)).collect(),
            Reinit::Uniform => (0..len).map(|_| rng.random_range(-1.0..=1.0)).collect(),
            Reinit::Zero => vec![0.0; len],
        }
    }
}

struct SetValues<'a> {
    path: Vec<String>,
    values: &'a BTreeMap<String, Vec<f64>>,
    precision: Precision,
}

impl ModuleMapper for SetValues<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(values) = self.values.get(&self.path.join(".")) else {
            return param;
        };
        let precision = self.precision;
        param.map(|t| {
            let dims = t.dims();
            let device = t.device();
            let data = match precision {
                Precision::F32 => TensorData::new(
                    values.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                    dims.to_vec(),
                ),
                Precision::F64 => TensorData::new(values.clone(), dims.to_vec()),
            };
            let dtype: DType = precision.dtype();
            let fresh = Tensor::<D>::from_data(data, (&device, dtype));
            if t.is_require_grad() {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// `module` with the parameters named in `values` (path → row-major values of the
/// parameter's shape) overwritten; the gradient requirement of each is kept. Panics if a
/// length does not match the shape (a caller bug: shapes come from [`param_infos`]).
pub fn set_values<M: Module>(
    module: M,
    values: &BTreeMap<String, Vec<f64>>,
    precision: Precision,
) -> M {
    for info in param_infos(&module) {
        if let Some(v) = values.get(&info.path) {
            assert_eq!(
                v.len(),
                info.shape.iter().product::<usize>(),
                "set_values: {} has shape {:?}",
                info.path,
                info.shape
            );
        }
    }
    module.map(&mut SetValues {
        path: Vec::new(),
        values,
        precision,
    })
}

/// The values of the parameter at `path` (row-major), if there is one.
pub fn values_of<M: Module>(module: &M, path: &str) -> Option<Vec<f64>> {
    struct Get<'a> {
        path: Vec<String>,
        want: &'a str,
        out: Option<Vec<f64>>,
    }
    impl ModuleVisitor for Get<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.path.join(".") == self.want {
                self.out = Some(to_host(param.val()));
            }
        }
    }
    let mut g = Get {
        path: Vec::new(),
        want: path,
        out: None,
    };
    module.visit(&mut g);
    g.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, TwoLayerConfig};
    use burn::tensor::Device;

    fn model() -> crate::TwoLayer {
        TwoLayerConfig {
            width: 4,
            activation: Activation::Logcosh,
            init_scale: 1.0,
        }
        .symmetric_init(3, 0, &Device::flex().autodiff(), Precision::F64)
        .unwrap()
    }

    #[test]
    fn two_layer_paths_and_groups() {
        let m = model();
        let paths: Vec<String> = param_infos(&m).into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["w", "b", "a", "c"]);
        let r = resolve_paths(&m, &["c".into(), "a".into()], "schedule.1.train").unwrap();
        assert_eq!(r, ["a", "c"]);
        let e = resolve_paths(&m, &["W".into()], "schedule.1.train").unwrap_err();
        assert!(e.contains("schedule.1.train") && e.contains("`W`"), "{e}");
        assert!(resolve_paths(&m, &[], "schedule.0.train").is_err());
        assert!(
            !selects("a", "ab") && selects("l.0", "l.0.weight") && !selects("l.0", "l.0.norm.mean")
        );
    }

    #[test]
    fn train_only_freezes_the_rest() {
        let m = train_only(model(), &["w".into()]);
        assert!(m.w.val().is_require_grad());
        assert!(!m.a.val().is_require_grad() && !m.b.val().is_require_grad());
        let m = train_only(m, &["a".into(), "c".into()]);
        assert!(!m.w.val().is_require_grad() && m.a.val().is_require_grad());
    }

    #[test]
    fn set_values_overwrites_by_path() {
        let mut v = BTreeMap::new();
        v.insert("b".to_string(), vec![1.0, 2.0, 3.0, 4.0]);
        let m = set_values(model(), &v, Precision::F64);
        assert_eq!(to_host(m.b.val()), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(values_of(&m, "b").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(to_host(m.a.val()), vec![1.0, 1.0, -1.0, -1.0]);
    }
}
