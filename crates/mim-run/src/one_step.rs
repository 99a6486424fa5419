//! `method = "one_step"` with `one_step.variant = "dls22"` (the default): DLS22's algorithm as
//! the authors' `main.py` runs it (github.com/adamian98/COLT2022 @ 54d55ee; the pieces are in
//! [`mim_train::one_step`], the peer script is `benches/peers/dls22.py`).
//!
//! Their data roles in mim's splits: D1 is their n training samples (C0 and C1, the step and the
//! ridge all use it, as theirs reuse the same samples), D2 their separate validation set (λ is
//! picked on it), the test set theirs. Every label set is y − C0 − C1ᵀx with C0, C1 from D1,
//! so `test_mse` is normalised by the variance of those test labels and `test_excess_risk` =
//! mean (f − y_test + C0 + C1ᵀx)² − σ² is their test loss. The step is recorded as `stage1`
//! steps 0 and 1 in `metrics.jsonl`, then a `one_step` record (C0, ‖C1‖, η, λ and the validation
//! grid). No checkpoints: `--resume` starts such a run again.

use crate::config::ValidConfig;
use crate::progress::Reporter;
use crate::run::{Fitted, RunError};
use crate::seeds::{derive_seed, Purpose};
use crate::tracker::Stage1Tracker;
use burn::module::Param;
use burn::tensor::{Device, Tensor};
use mim_data::{Split, Target};
use mim_model::{from_host_1d, from_host_2d, to_host};
use mim_train::one_step::{dls22_step, fit_raw_ridge, paired_gaussian_init, LinearPart};
use mim_train::stage2::{label_variance, normalized_mse};
use mim_train::{Observer, Stage1State};
use std::time::Instant;

fn state(step: usize, w: &Tensor<2>, loss: f64, grad_norm: f64) -> Stage1State<'_> {
    Stage1State {
        stage: "stage1",
        step,
        total: 1,
        w,
        loss,
        grad_norm,
    }
}

/// Fits the network by DLS22's one step and raw ridge, with D1, D2 and the test set in memory.
pub(crate) fn fit_dls22(
    valid: &ValidConfig,
    target: &Target,
    device: &Device,
    reporter: &mut Reporter,
) -> Result<Fitted, RunError> {
    let cfg = &valid.config;
    let (d, p, m) = (cfg.data.d, cfg.dtype, cfg.model.width);
    let data_seed = derive_seed(cfg.seed, Purpose::Data);
    let d1 = target.sample(Split::Stage1, valid.n1, data_seed);
    let val = target.sample(Split::Stage2, valid.n2, data_seed);
    let test = target.sample(Split::Test, cfg.data.n_test, data_seed);
    let linear = LinearPart::estimate(&d1.x, &d1.y, d);
    let y1 = linear.remove(&d1.x, &d1.y);
    let y_val = linear.remove(&val.x, &val.y);
    let y_test = linear.remove(&test.x, &test.y);
    let model = paired_gaussian_init(
        m,
        cfg.model.activation,
        d,
        derive_seed(cfg.seed, Purpose::Init),
        device,
        p,
    )
    .map_err(|e| RunError::Config(crate::config::ConfigError(e.to_string())))?;

    let mut tracker = Stage1Tracker::new(target, reporter, cfg.metrics.svd);
    tracker.stage1_step(&state(0, &model.w.val(), f64::NAN, f64::NAN))?;
    let x1 = from_host_2d(&d1.x, d1.n, d, device, p);
    let y1_dev = from_host_1d(&y1, device, p);
    let (mut model, step) = dls22_step(model, &x1, &y1_dev, p)?;
    tracker.stage1_step(&state(1, &model.w.val(), step.loss, step.grad_norm))?;
    let stage1_seconds = tracker.start.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let x_val = from_host_2d(&val.x, val.n, d, device, p);
    let ridge = fit_raw_ridge(
        &model.features(x1.clone()),
        &y1_dev,
        &model.features(x_val),
        &from_host_1d(&y_val, device, p),
        &cfg.one_step.lambda_grid(),
        p,
    )?;
    model.a = Param::from_tensor(from_host_1d(&ridge.a, device, p));
    model.c = Param::from_tensor(from_host_1d(&[0.0], device, p));
    let c1_norm = linear.c1.iter().map(|v| v * v).sum::<f64>().sqrt();
    tracker
        .reporter
        .record(&serde_json::json!({
            "stage": "one_step", "variant": "dls22", "c0": linear.c0, "c1_norm": c1_norm,
            "grad_rms": step.grad_rms, "lr": step.lr(), "ridge_lambda": ridge.lambda,
            "lambda_grid": &ridge.grid,
        }))
        .map_err(|e| RunError::Io(format!("writing metrics.jsonl: {e}")))?;
    let train_mse = normalized_mse(&to_host(model.forward(x1).detach()), &y1);
    let x_test = from_host_2d(&test.x, test.n, d, device, p);
    let f_test = to_host(model.forward(x_test).detach());
    Ok(Fitted {
        model,
        power_iteration_cos: None,
        ridge_lambda: Some(ridge.lambda),
        train_mse,
        test_mse: normalized_mse(&f_test, &y_test),
        test_label_variance: label_variance(&y_test),
        stage1_seconds,
        stage2_seconds: t2.elapsed().as_secs_f64(),
        step_lr: Some(step.lr()),
    })
}

#[cfg(test)]
mod tests {
    use crate::checkpoint::load_model;
    use crate::config::{apply_override, parse_toml, RunConfig};
    use crate::run::{train, RunOptions};
    use crate::seeds::{derive_seed, Purpose};
    use burn::tensor::Device;
    use mim_data::{Split, Target};
    use mim_model::{from_host_1d, from_host_2d, to_host, Precision};
    use mim_train::one_step::{fit_raw_ridge, rms_row_norm, LinearPart};
    use mim_train::stage2::label_variance;

    /// A whole `one_step` run (variant dls22) is the authors' algorithm: the stepped W has rms
    /// row norm 1 and w_{j+m/2} = −w_j (the step at f ≡ 0 from the paired init), the paired
    /// N(0, 1) biases are kept, c = 0, the readout is the raw ridge on D1 with λ from the grid
    /// picked on D2 (recomputed here), and test_excess_risk is mean (f − y + C0 + C1ᵀx)² − σ²
    /// on the test set with C0, C1 from D1.
    #[test]
    fn dls22_run_is_the_authors_algorithm() {
        let mut table = parse_toml("", "test").unwrap();
        for s in [
            "method=one_step",
            "dtype=f64",
            "threads=1",
            "data.d=12",
            "data.r=1",
            "data.link=h2(z1)",
            "data.noise=0.5",
            "data.n1=1500",
            "data.n2=700",
            "data.n_test=800",
            "model.width=30",
            "model.activation=relu",
            "one_step.lambda_count=9",
            "one_step.lambda_min=1e-6",
            "one_step.lambda_max=1e2",
        ] {
            apply_override(&mut table, s).unwrap();
        }
        let valid = RunConfig::from_table(table).unwrap().validate().unwrap();
        let cfg = &valid.config;
        let out = std::env::temp_dir().join(format!("mim-dls22-{}", std::process::id()));
        let summary = train(
            &valid,
            &RunOptions {
                out_dir: out.clone(),
                quiet: true,
            },
        )
        .unwrap();
        let (d, m, half) = (12, 30, 15);
        let p = Precision::F64;
        let device = Device::flex();
        let template = cfg
            .model
            .two_layer()
            .symmetric_init(d, 0, &device, p)
            .unwrap();
        let model = load_model(&out.join("model.bpk"), template).unwrap();
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let _ = std::fs::remove_dir_all(&out);

        assert_eq!(summary.method, "one_step");
        assert_eq!(summary.steps, 1);
        assert!((summary.lr * summary.weight_decay - 1.0).abs() < 1e-12);
        let (w, b, c) = (
            to_host(model.w.val()),
            to_host(model.b.val()),
            to_host(model.c.val()),
        );
        assert!((rms_row_norm(&w, d) - 1.0).abs() < 1e-9);
        for k in 0..half * d {
            assert!((w[k] + w[half * d + k]).abs() < 1e-9, "w_(j+m/2) ≠ −w_j");
        }
        assert_eq!(&b[..half], &b[half..]);
        assert!(b.iter().any(|v| v.abs() > 0.5), "biases are N(0, 1)");
        assert_eq!(c, vec![0.0]);
        let grid = cfg.one_step.lambda_grid();
        let lambda = summary.ridge_lambda.unwrap();
        assert!(grid.contains(&lambda), "λ = {lambda} is not a grid point");
        let record = metrics
            .lines()
            .find(|l| l.contains("\"stage\":\"one_step\""))
            .expect("a one_step record");
        let record: serde_json::Value = serde_json::from_str(record).unwrap();
        assert_eq!(record["lambda_grid"].as_array().unwrap().len(), 9);

        // Recompute the readout and the test metric from regenerated data.
        let target = Target::new(
            d,
            1,
            valid.link.clone(),
            cfg.data.noise,
            cfg.data.normalize,
            derive_seed(cfg.seed, Purpose::Target),
        )
        .unwrap();
        let seed = derive_seed(cfg.seed, Purpose::Data);
        let d1 = target.sample(Split::Stage1, 1500, seed);
        let d2 = target.sample(Split::Stage2, 700, seed);
        let test = target.sample(Split::Test, 800, seed);
        let lin = LinearPart::estimate(&d1.x, &d1.y, d);
        let feats = |x: &[f64], n: usize| model.features(from_host_2d(x, n, d, &device, p));
        let labels = |y: &[f64]| from_host_1d(y, &device, p);
        let ridge = fit_raw_ridge(
            &feats(&d1.x, 1500),
            &labels(&lin.remove(&d1.x, &d1.y)),
            &feats(&d2.x, 700),
            &labels(&lin.remove(&d2.x, &d2.y)),
            &grid,
            p,
        )
        .unwrap();
        assert_eq!(ridge.lambda, lambda);
        let a = to_host(model.a.val());
        assert_eq!(a.len(), m);
        for (j, (got, want)) in a.iter().zip(&ridge.a).enumerate() {
            assert!((got - want).abs() < 1e-9 * (1.0 + got.abs()), "a[{j}]");
        }
        let y_test = lin.remove(&test.x, &test.y);
        let f = to_host(model.forward(from_host_2d(&test.x, 800, d, &device, p)));
        let mse = f
            .iter()
            .zip(&y_test)
            .map(|(u, v)| (u - v).powi(2))
            .sum::<f64>()
            / 800.0;
        let excess = mse - target.noise.powi(2);
        assert!(
            (summary.test_excess_risk - excess).abs() < 1e-9,
            "{} vs {excess}",
            summary.test_excess_risk
        );
        assert!((summary.test_label_variance - label_variance(&y_test)).abs() < 1e-12);
        assert!(
            (label_variance(&y_test) - label_variance(&test.y)).abs() > 1e-6,
            "the test labels were adjusted"
        );
        assert!(
            summary.test_excess_risk < 0.5,
            "excess {}",
            summary.test_excess_risk
        );
    }
}
