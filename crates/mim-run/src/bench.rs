//! `mim bench`: the measuring stick for performance. Times, warm and repeated (median):
//! a plain SGEMM (the machine's rate in this run), one stage-1 step per gradient path, the
//! step a default `mim train` pays (`stage1_step[user]`: the default gradient path with the
//! default per-step metrics: W metrics by subspace iteration and the power-iteration check),
//! the metrics' one-time setup and their cost per step timed inside the same runs
//! (`metrics_per_step`, with its share of the rest of the step), the stage-2 solve and data
//! generation under each generator (`data_generation[v1]`, `[v2]`: n rows into reused f32
//! buffers, as a streamed pass draws them); reports GFLOP/s (4·n·d·m per step) and the ratio
//! to the SGEMM rate (median over median, and for the stage-1 steps also paired: each
//! repetition against the SGEMM samples around it), and writes JSON.

use crate::backend::{open_device, with_threads, Backend};
use crate::progress::Reporter;
use crate::results::JsonlWriter;
use crate::tracker::Stage1Tracker;
use burn::tensor::Tensor;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use mim_data::{Generator, Link, Split, Target};
use mim_metrics::{PowerIteration, SvdMethod};
use mim_model::{
    from_host_1d, from_host_2d, standard_normals, to_host, Activation, Precision, TwoLayerConfig,
};
use mim_train::observer::NoObserver;
use mim_train::{run_stage1, run_stage2, Gradient, Loss, Mode, Stage1Params, Stage2Config};
use mim_train::{Observer, Stage1State, TrainError};
use serde::Serialize;
use std::time::Instant;

/// Times the observer it wraps: the per-step metrics' own cost, inside a timed run.
struct TimedObserver<'a> {
    inner: &'a mut dyn Observer,
    ms: f64,
}

impl Observer for TimedObserver<'_> {
    fn stage1_step(&mut self, state: &Stage1State<'_>) -> Result<(), TrainError> {
        let t = Instant::now();
        let out = self.inner.stage1_step(state);
        self.ms += t.elapsed().as_secs_f64() * 1e3;
        out
    }
}

/// One stage-1 problem size.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepSize {
    /// d.
    pub d: usize,
    /// n.
    pub n: usize,
    /// m.
    pub m: usize,
}

/// The sizes of a preset: `tiny` (CI smoke test), `small` (d = 100), `paper` (d = 100 and 1000)
/// or `gpu` (d = 4096, n = 65 536, m = 1024: the size the GPU goal is stated at).
pub fn preset(name: &str) -> Result<Vec<StepSize>, String> {
    let s = |d, n, m| StepSize { d, n, m };
    match name {
        "tiny" => Ok(vec![s(20, 2000, 64)]),
        "small" => Ok(vec![s(100, 10_000, 1000)]),
        "paper" => Ok(vec![s(100, 10_000, 1000), s(1000, 20_000, 1000)]),
        "gpu" => Ok(vec![s(4096, 65_536, 1024)]),
        _ => Err(format!(
            "--sizes {name}: expected tiny, small, paper or gpu"
        )),
    }
}

/// A timed item.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    /// What was timed.
    pub name: String,
    /// Median milliseconds.
    pub median_ms: f64,
    /// All repetitions, milliseconds.
    pub runs_ms: Vec<f64>,
    /// GFLOP/s where a flop count is defined.
    pub gflops: Option<f64>,
    /// gflops / the SGEMM GFLOP/s of this run (median over median).
    pub ratio_to_sgemm: Option<f64>,
    /// For the stage-1 steps: the median over repetitions of each repetition's GFLOP/s over the
    /// SGEMM rate around it (the mean of the samples taken just before and just after it), so
    /// that the machine's drift between repetitions cancels in each ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_ratio_to_sgemm: Option<f64>,
    /// gflops / the stated peak ([`BenchReport::with_peak`]), when one was given.
    pub ratio_to_peak: Option<f64>,
    /// For `metrics_per_step`: the median over repetitions of the observer's time per step
    /// over the rest of that step, both from the same observed runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_of_step: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// mim version.
    pub version: String,
    /// Backend.
    pub backend: String,
    /// Threads of the CPU pool.
    pub threads: usize,
    /// SGEMM GFLOP/s (f32, 2048³, faer, all threads): median of the samples taken through
    /// this run ([`SgemmProbe`]).
    pub sgemm_gflops: f64,
    /// The device's FP32 peak GFLOP/s as stated by the user (e.g. from a GPU's data sheet).
    pub peak_gflops: Option<f64>,
    /// Everything timed.
    pub timings: Vec<Timing>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_reps(reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    f(); // warm-up
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// A timing; its `ratio_to_sgemm` is filled in at the end of the run, from all SGEMM samples.
fn timing(name: String, mut runs: Vec<f64>, flops: Option<f64>) -> Timing {
    let median_ms = median(&mut runs);
    let gflops = flops.map(|f| f / (median_ms * 1e-3) / 1e9);
    Timing {
        name,
        median_ms,
        runs_ms: runs,
        gflops,
        ratio_to_sgemm: None,
        paired_ratio_to_sgemm: None,
        ratio_to_peak: None,
        share_of_step: None,
    }
}

/// [`timing`] of a stage-1 step with `flops` per step, whose repetition i ran between the SGEMM
/// samples `rates[i]` and `rates[i + 1]` (GFLOP/s): also its paired ratio.
fn paired_timing(name: String, runs: Vec<f64>, flops: f64, rates: &[f64]) -> Timing {
    let mut ratios: Vec<f64> = runs
        .iter()
        .zip(rates.windows(2))
        .filter(|(&ms, _)| ms > 0.0)
        .map(|(&ms, r)| flops / (ms * 1e-3) / 1e9 / (0.5 * (r[0] + r[1])))
        .collect();
    let mut t = timing(name, runs, Some(flops));
    t.paired_ratio_to_sgemm = (!ratios.is_empty()).then(|| median(&mut ratios));
    t
}

/// The machine's SGEMM rate in this run: f32 k×k×k through faer with all threads, sampled
/// between the timed items (one sample before each stage-1 repetition), so that it sees the
/// same machine state as they do; on a shared VM the rate drifts by ±20 % within a minute, and
/// a rate measured once at the start made the ratio swing with it.
pub struct SgemmProbe {
    a: Mat<f32>,
    c: Mat<f32>,
    runs_ms: Vec<f64>,
}

impl SgemmProbe {
    /// k×k operands; one untimed run, then `warm` timed samples (so the median always exists).
    pub fn new(k: usize, warm: usize) -> Self {
        let mut probe = Self {
            a: Mat::<f32>::from_fn(k, k, |i, j| ((i * 7 + j * 3) % 11) as f32 * 0.1),
            c: Mat::<f32>::zeros(k, k),
            runs_ms: Vec::new(),
        };
        probe.run();
        for _ in 0..warm {
            probe.sample();
        }
        probe
    }

    fn run(&mut self) {
        matmul(
            self.c.as_mut(),
            Accum::Replace,
            self.a.as_ref(),
            self.a.as_ref(),
            1.0,
            Par::rayon(0),
        );
    }

    /// Times one SGEMM; returns its GFLOP/s.
    pub fn sample(&mut self) -> f64 {
        let t = Instant::now();
        self.run();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        self.runs_ms.push(ms);
        self.rate(ms)
    }

    /// GFLOP/s of one k×k×k product that took `ms`.
    fn rate(&self, ms: f64) -> f64 {
        let k = self.a.nrows() as f64;
        2.0 * k.powi(3) / (ms * 1e-3) / 1e9
    }

    /// GFLOP/s of the median sample.
    pub fn gflops(&self) -> f64 {
        self.rate(median(&mut self.runs_ms.clone()))
    }
}

impl BenchReport {
    /// Records a stated FP32 peak (GFLOP/s) and each timing's fraction of it.
    pub fn with_peak(mut self, peak_gflops: f64) -> Self {
        self.peak_gflops = Some(peak_gflops);
        for t in &mut self.timings {
            t.ratio_to_peak = t.gflops.map(|g| g / peak_gflops);
        }
        self
    }
}

/// Runs the benchmark on `threads` threads (0 = one per core).
pub fn run_bench(
    backend: Backend,
    sizes: &[StepSize],
    reps: usize,
    threads: usize,
) -> Result<BenchReport, String> {
    with_threads(threads, || bench_here(backend, sizes, reps))?
}

fn bench_here(backend: Backend, sizes: &[StepSize], reps: usize) -> Result<BenchReport, String> {
    let device = open_device(backend)?;
    let p = Precision::F32;
    let mut sgemm = SgemmProbe::new(2048, 3);
    let mut timings = Vec::new();
    let paths: &[Gradient] = if backend == Backend::Wgpu {
        &[Gradient::Autodiff, Gradient::ClosedForm]
    } else {
        &[Gradient::Autodiff, Gradient::ClosedForm, Gradient::Fused]
    };
    for &StepSize { d, n, m } in sizes {
        let x = from_host_2d(&standard_normals(n * d, 1), n, d, &device, p);
        let y = from_host_1d(&standard_normals(n, 2), &device, p);
        let model = TwoLayerConfig {
            width: m,
            activation: Activation::Logcosh,
            init_scale: 1e-3,
        }
        .symmetric_init(d, 3, &device, p)
        .map_err(|e| e.to_string())?;
        let flops = 4.0 * (n * d * m) as f64;
        for &gradient in paths {
            // Per-step time = (T(k + 1 steps) − T(1 step)) / k: setup (host copies) cancels.
            let params = |steps| Stage1Params {
                steps,
                lr: 1.0,
                weight_decay: 1.0,
                loss: Loss::Huber { delta: 1.0 },
                mode: Mode::Normalized,
                gradient,
                init_scale: 1e-3,
            };
            let k = 3;
            let run = |steps| {
                let t = Instant::now();
                let out = run_stage1(model.clone(), &x, &y, &params(steps), &mut NoObserver)
                    .map(|m| to_host(m.w.val().sum()));
                (t.elapsed().as_secs_f64() * 1e3, out)
            };
            let _ = run(1);
            let (mut runs, mut rates) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                rates.push(sgemm.sample());
                let (t1, _) = run(1);
                let (tk, out) = run(k + 1);
                out.map_err(|e| e.to_string())?;
                runs.push(((tk - t1) / k as f64).max(0.0));
            }
            rates.push(sgemm.sample());
            let name = format!(
                "stage1_step[{}] d={d} n={n} m={m}",
                format!("{gradient:?}").to_lowercase()
            );
            timings.push(paired_timing(name, runs, flops, &rates));
        }
        // The step a default `mim train` pays: the default path for the backend with the
        // default observer (W metrics, power iterates), per step as above; and the one-time
        // cost of that observer (Σ̂_T for the dense power route, the step-0 metrics).
        let default_path = if backend == Backend::Wgpu {
            Gradient::ClosedForm
        } else {
            Gradient::Fused
        };
        let link = Link::parse("h4(z1)+h4(z2)").map_err(|e| e.to_string())?;
        let target = Target::new(d, 2, link, 0.0, true, 5).map_err(|e| e.to_string())?;
        let y_host = to_host(y.clone());
        let loss = Loss::Huber { delta: 1.0 };
        let t_host: Vec<f64> = y_host.iter().map(|&v| loss.label_transform(v)).collect();
        let jsonl = std::env::temp_dir().join(format!("mim-bench-{}.jsonl", std::process::id()));
        let params = |steps| Stage1Params {
            steps,
            lr: 1.0,
            weight_decay: 1.0,
            loss,
            mode: Mode::Normalized,
            gradient: default_path,
            init_scale: 1e-3,
        };
        // The dense-route decision of a default run (T1 = ⌈2√ln d⌉ steps), for both timings.
        let t1 = mim_train::Stage1Config::default().resolved_steps(d);
        let neurons = crate::config::MetricsConfig::default().power_neurons;
        // (wall ms, ms spent inside the observer) of a run of `steps` observed steps.
        let run_observed = |steps: usize| -> Result<(f64, f64), String> {
            let t = Instant::now();
            let mut reporter = Reporter::new(
                JsonlWriter::create(&jsonl).map_err(|e| format!("{}: {e}", jsonl.display()))?,
                true,
            );
            let mut tracker = Stage1Tracker::new(&target, &mut reporter, SvdMethod::Subspace);
            tracker.power = Some(PowerIteration::new(
                x.clone(),
                from_host_1d(&t_host, &device, p),
                model.a.val(),
                model.w.val(),
                (1.0, 1.0),
                PowerIteration::dense_pays(n, d, neurons.count(m), t1),
                neurons.rows(m).as_deref(),
            ));
            let mut timed = TimedObserver {
                inner: &mut tracker,
                ms: 0.0,
            };
            run_stage1(model.clone(), &x, &y, &params(steps), &mut timed)
                .map_err(|e| e.to_string())?;
            Ok((t.elapsed().as_secs_f64() * 1e3, timed.ms))
        };
        let run_plain = |steps| {
            let t = Instant::now();
            let _ = run_stage1(model.clone(), &x, &y, &params(steps), &mut NoObserver);
            t.elapsed().as_secs_f64() * 1e3
        };
        run_observed(1)?;
        let (mut user, mut setup, mut metrics, mut share) = (vec![], vec![], vec![], vec![]);
        let mut rates = Vec::new();
        let steps = t1.max(2);
        for _ in 0..reps {
            rates.push(sgemm.sample());
            let plain = run_plain(1);
            let (one, in_one) = run_observed(1)?;
            let (more, in_more) = run_observed(steps)?;
            // Per step from the difference (setup and the step-0 metrics cancel); the
            // observer's share is timed inside the same runs, so it sees the same machine
            // state as the step it is compared with (this VM drifts by ±20–40 % in a minute).
            let user_step = ((more - one) / (steps - 1) as f64).max(0.0);
            let observer = ((in_more - in_one) / (steps - 1) as f64).max(0.0);
            user.push(user_step);
            setup.push((one - plain).max(0.0));
            metrics.push(observer);
            share.push(observer / (user_step - observer).max(1e-9));
        }
        let _ = std::fs::remove_file(&jsonl);
        rates.push(sgemm.sample());
        timings.push(paired_timing(
            format!("stage1_step[user] d={d} n={n} m={m}"),
            user,
            flops,
            &rates,
        ));
        timings.push(timing(
            format!("metrics_setup d={d} n={n} m={m}"),
            setup,
            None,
        ));
        let mut per_step_metrics =
            timing(format!("metrics_per_step d={d} n={n} m={m}"), metrics, None);
        per_step_metrics.share_of_step = Some(median(&mut share));
        timings.push(per_step_metrics);
        // The W metrics of one step alone (`metrics.svd` default), on W after one step.
        let w1 = run_stage1(model.clone(), &x, &y, &params(1), &mut NoObserver)
            .map_err(|e| e.to_string())?;
        let w_host = to_host(w1.w.val());
        let mut failed = None;
        let runs = time_reps(reps, || {
            if let Err(e) = crate::tracker::w_metrics(&w_host, m, &target, SvdMethod::Subspace) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        timings.push(timing(format!("metrics_w d={d} m={m}"), runs, None));
        // Stage 2: features n×m, Gram, Cholesky solve (fixed λ), on the same data.
        let cfg = Stage2Config {
            ridge_lambda: mim_train::Auto::Value(1e-3),
            ..Default::default()
        };
        let runs = time_reps(reps, || {
            let _ = run_stage2(model.clone(), &x, &y, &cfg, 4, p);
        });
        timings.push(timing(
            format!("stage2_ridge d={d} n={n} m={m}"),
            runs,
            None,
        ));
        let runs = time_reps(reps, || {
            let t: Tensor<2> = x.clone().matmul(model.w.val().transpose());
            let _ = to_host(t.sum());
        });
        timings.push(timing(
            format!("backend_gemm n×d·d×m d={d} n={n} m={m}"),
            runs,
            Some(2.0 * (n * d * m) as f64),
        ));
        // Drawing the n rows into reused f32 buffers, as a streamed pass does, per generator.
        for generator in [Generator::V1, Generator::V2] {
            let target = target.clone().with_generator(generator);
            let (mut xs, mut ys) = (Vec::<f32>::new(), Vec::new());
            let draw = || {
                target.sample_rows_as(Split::Stage1, 6, 0, n, Some(&mut xs), &mut ys, |v| v as f32)
            };
            let runs = time_reps(reps, draw);
            timings.push(timing(
                format!("data_generation[{generator}] d={d} n={n}"),
                runs,
                None,
            ));
        }
    }
    let sgemm_gflops = sgemm.gflops();
    for t in &mut timings {
        t.ratio_to_sgemm = t.gflops.map(|g| g / sgemm_gflops);
    }
    Ok(BenchReport {
        version: env!("CARGO_PKG_VERSION").into(),
        backend: backend.name().into(),
        threads: rayon::current_num_threads(),
        sgemm_gflops,
        peak_gflops: None,
        timings,
    })
}

#[cfg(test)]
mod tests {
    use super::paired_timing;

    /// A machine that halves its speed after the first repetition: every repetition ran at its
    /// own SGEMM rate, so the paired ratio reads 1, where median over median reads 0.5; a
    /// repetition timed at 0 ms (no resolution) is left out of the pairs.
    #[test]
    fn paired_ratio_cancels_drift_between_repetitions() {
        let flops = 1e9; // 10 ms = 100 GFLOP/s
        let rates = [100.0, 100.0, 50.0, 50.0];
        let t = paired_timing("s".into(), vec![10.0, 20.0, 20.0], flops, &rates);
        // Ratios 100/100, 50/75, 50/50: median 1.
        assert_eq!(t.paired_ratio_to_sgemm, Some(1.0));
        let median_over_median = t.gflops.unwrap() / 100.0;
        assert_eq!(median_over_median, 0.5);
        let t = paired_timing("s".into(), vec![0.0, 20.0, 20.0], flops, &rates);
        // Ratios of the two timed repetitions only: 50/75 and 1; the median takes the upper.
        assert_eq!(t.paired_ratio_to_sgemm, Some(1.0));
        let t = paired_timing("s".into(), vec![0.0], flops, &rates[..2]);
        assert_eq!(t.paired_ratio_to_sgemm, None);
        // One repetition between samples of 100 and 50 GFLOP/s is measured against their mean.
        let t = paired_timing("s".into(), vec![10.0], flops, &[100.0, 50.0]);
        assert_eq!(t.paired_ratio_to_sgemm, Some(100.0 / 75.0));
    }
}
