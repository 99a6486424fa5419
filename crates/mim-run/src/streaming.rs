//! Streaming datasets: when D1, D2 and the test set would not fit the memory budget, they are
//! regenerated chunk by chunk from their counter-based seeded streams on every pass
//! (`Target::sample_rows`), bit-identical to the in-memory data of the same seed. Stage 1
//! accumulates the full-batch gradient over chunks with the fused CPU kernel; stage 2
//! accumulates the feature sums (Σφ, Σφφᵀ, Σφy, Σy, Σy²) and fits the readout from them,
//! choosing λ on the sums of the held-out 20 %; the test error is accumulated likewise. Only
//! one chunk of rows is in memory at a time. CPU backends only; the power-iteration metric is
//! not computed in this mode.

use crate::tracker::Stage1Tracker;
use burn::tensor::{Device, Element, Tensor, TensorData};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use mim_data::{Split, Target};
use mim_model::Activation;
use mim_model::TwoLayer;
use mim_train::fused::{FusedProblem, GradientSums, Real};
use mim_train::stage2::HeldOutSums;
use mim_train::{
    gd_stage_with, label_shift, CenterBy, FirstLayerGradient, Loss, Stage1Params, Stage2Config,
    Stage2Report, TrainError,
};
use rayon::prelude::*;

/// Rows per chunk: `requested` rounded up to whole generator blocks, or (0) about 256 MiB of
/// f64 inputs.
pub fn chunk_rows(d: usize, requested: usize) -> usize {
    let rows = if requested > 0 {
        requested
    } else {
        (256usize << 20) / (d.max(1) * 8)
    };
    rows.div_ceil(mim_data::BLOCK_ROWS).clamp(1, 64) * mim_data::BLOCK_ROWS
}

/// Bytes the in-memory path needs for the data: host f64 copies plus device copies of
/// D1, D2 and the test set, and the n×m activations of the largest set.
pub fn in_memory_bytes(
    d: usize,
    n1: usize,
    n2: usize,
    n_test: usize,
    m: usize,
    dtype_bytes: usize,
) -> f64 {
    // In f64: sizes from a config may be large enough to overflow usize products.
    let rows = n1 as f64 + n2 as f64 + n_test as f64;
    rows * d as f64 * (8 + dtype_bytes) as f64
        + n1.max(n2).max(n_test) as f64 * m as f64 * (dtype_bytes * 3) as f64
}

/// Physical memory of this machine (MemTotal of /proc/meminfo), if readable.
pub fn physical_memory_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Peak resident set size of this process (VmHWM of /proc/self/status) in MiB, if readable.
pub fn peak_rss_mib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Where the streamed rows come from.
pub struct Streams<'a> {
    /// The target (U, link, noise).
    pub target: &'a Target,
    /// The data seed.
    pub seed: u64,
    /// Rows per chunk.
    pub chunk: usize,
}

impl Streams<'_> {
    /// Calls `f(start, rows, x, y)` for consecutive chunks of the first `n` rows of `split`,
    /// x drawn straight into precision T (bit-identical to casting the f64 rows:
    /// [`Target::sample_rows_as`]; T = f64 for the rows themselves) or left empty when
    /// `with_x` is false (a pass over the labels alone); both buffers reused across chunks.
    pub fn for_chunks<T: Real, E>(
        &self,
        split: Split,
        n: usize,
        with_x: bool,
        mut f: impl FnMut(usize, usize, &[T], &[f64]) -> Result<(), E>,
    ) -> Result<(), E> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let len = self.chunk.min(n - start);
            self.target.sample_rows_as(
                split,
                self.seed,
                start,
                len,
                with_x.then_some(&mut x),
                &mut y,
                T::of,
            );
            f(start, len, &x, &y)?;
            start += len;
        }
        Ok(())
    }

    /// Calls `f(start, rows, x)` for consecutive chunks of the first `n` rows of `split`, the
    /// inputs alone (no labels: [`Target::sample_inputs_as`]) drawn straight into precision T,
    /// for a pass whose labels are already held; the buffer is reused across chunks.
    pub fn for_input_chunks<T: Real, E>(
        &self,
        split: Split,
        n: usize,
        mut f: impl FnMut(usize, usize, &[T]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut x = Vec::new();
        let mut start = 0;
        while start < n {
            let len = self.chunk.min(n - start);
            self.target
                .sample_inputs_as(split, self.seed, start, len, &mut x, T::of);
            f(start, len, &x)?;
            start += len;
        }
        Ok(())
    }
}

/// `v` in the kernel's precision, element by element, into `out` (reused across chunks; in
/// parallel: at d = 16 384 a step casts n1·d values, too many for one core).
fn cast_into<'a, T: Real>(v: &[f64], out: &'a mut Vec<T>) -> &'a [T] {
    out.resize(v.len(), T::of(0.0));
    out.par_iter_mut()
        .zip(v.par_iter())
        .for_each(|(o, &x)| *o = T::of(x));
    out
}

/// Stage-1 label preprocessing from one streamed pass: the shift c of the labels
/// ([`label_shift`] on the collected y, exactly as in memory: mean or the loss's location),
/// if asked β̂ = (1/n) Σ (y − c) x, and the labels y themselves (n f64, kept so that the steps
/// draw only x).
fn label_transform_sums(
    streams: &Streams<'_>,
    n: usize,
    d: usize,
    centering: Option<CenterBy>,
    loss: &Loss,
    remove_linear: bool,
) -> (f64, Vec<f64>, Vec<f64>) {
    let (mut ys, mut syx, mut sx) = (Vec::with_capacity(n), vec![0.0; d], vec![0.0; d]);
    // The rows are drawn (y needs them) but written out only when β̂ needs them.
    let _ = streams.for_chunks::<f64, ()>(Split::Stage1, n, remove_linear, |_, _, x, y| {
        ys.extend_from_slice(y);
        for (row, &yi) in x.chunks_exact(d).zip(y) {
            for (k, &xv) in row.iter().enumerate() {
                syx[k] += yi * xv;
                sx[k] += xv;
            }
        }
        Ok(())
    });
    let nf = n as f64;
    let shift = label_shift(&ys, centering, loss);
    let beta = if remove_linear {
        (0..d).map(|k| (syx[k] - shift * sx[k]) / nf).collect()
    } else {
        vec![0.0; d]
    };
    (shift, beta, ys)
}

/// ∇_W L̂ over streamed D1 for the engine's GD loop: every call regenerates D1 chunk by chunk
/// (into reused buffers) and accumulates the fused kernel's per-thread sums across chunks.
struct StreamedGradient<'s, 'a, T> {
    streams: &'s Streams<'a>,
    n1: usize,
    /// The labels of D1 from the label pass (each step redraws only x).
    y1: Vec<f64>,
    /// The label shift c and, when the linear part is removed, β̂.
    shift: f64,
    beta_lin: Vec<f64>,
    remove_linear: bool,
    b: Vec<T>,
    a: Vec<T>,
    c: T,
    activation: Activation,
    loss: Loss,
    x_buf: Vec<T>,
    y_buf: Vec<T>,
    /// The kernel's accumulators, kept from step to step (64 MiB per thread at m = 1024,
    /// d = 16 384: allocated once, not faulted in again every step).
    sums: GradientSums<T>,
}

impl<T: Real + Element> FirstLayerGradient for StreamedGradient<'_, '_, T> {
    fn gradient(&mut self, model: &TwoLayer) -> Result<(Tensor<2>, f64), TrainError> {
        let wt = model.w.val();
        let [m, d] = wt.dims();
        let w: Vec<T> = mim_model::to_host_as(&wt.clone().detach());
        let (x_buf, y_buf, sums) = (&mut self.x_buf, &mut self.y_buf, &mut self.sums);
        let (shift, beta_lin, remove_linear) = (self.shift, &self.beta_lin, self.remove_linear);
        let y1 = &self.y1;
        let (b, a, c, activation, loss) = (&self.b, &self.a, self.c, self.activation, self.loss);
        if remove_linear {
            // y − c − β̂·x needs the f64 rows: drawn in f64, then cast.
            self.streams.for_chunks::<f64, TrainError>(
                Split::Stage1,
                self.n1,
                true,
                |_, n, x, y| {
                    let y: Vec<f64> = (0..n)
                        .into_par_iter()
                        .map(|i| {
                            let row = &x[i * d..(i + 1) * d];
                            let lin: f64 = row.iter().zip(beta_lin).map(|(x, b)| x * b).sum();
                            y[i] - shift - lin
                        })
                        .collect();
                    let p = FusedProblem {
                        x: cast_into(x, x_buf),
                        y: cast_into(&y, y_buf),
                        n,
                        d,
                        b,
                        a,
                        c,
                        activation,
                        loss,
                    };
                    sums.add(&p, &w);
                    Ok(())
                },
            )?;
        } else {
            // x drawn straight into T; the held y − c cast alongside.
            self.streams.for_input_chunks::<T, TrainError>(
                Split::Stage1,
                self.n1,
                |start, n, x| {
                    y_buf.clear();
                    y_buf.extend(y1[start..start + n].iter().map(|&v| T::of(v - shift)));
                    let p = FusedProblem {
                        x,
                        y: y_buf,
                        n,
                        d,
                        b,
                        a,
                        c,
                        activation,
                        loss,
                    };
                    sums.add(&p, &w);
                    Ok(())
                },
            )?;
        }
        let (g, loss) = sums.mean();
        let g = Tensor::from_data(TensorData::new(g, [m, d]), (&wt.device(), wt.dtype()));
        Ok((g, loss))
    }
}

/// Stage 1 over streamed D1: the engine's GD loop ([`gd_stage_with`]) on `w`, with Ḡ
/// accumulated over regenerated chunks by the fused kernel. Returns the model with the
/// trained W.
pub fn stream_stage1<T: Real + Element>(
    streams: &Streams<'_>,
    n1: usize,
    params: &Stage1Params,
    centering: Option<CenterBy>,
    remove_linear: bool,
    model: TwoLayer,
    tracker: &mut Stage1Tracker<'_>,
) -> Result<TwoLayer, TrainError> {
    let d = streams.target.d;
    let (shift, beta_lin, y1) =
        label_transform_sums(streams, n1, d, centering, &params.loss, remove_linear);
    let mut provider = StreamedGradient::<T> {
        streams,
        n1,
        y1,
        shift,
        beta_lin,
        remove_linear,
        b: mim_model::to_host_as(&model.b.val()),
        a: mim_model::to_host_as(&model.a.val()),
        c: mim_model::to_host_as::<T, 1>(&model.c.val())[0],
        activation: model.activation,
        loss: params.loss,
        x_buf: Vec::new(),
        y_buf: Vec::new(),
        sums: GradientSums::new(model.width(), d),
    };
    gd_stage_with(
        model,
        None,
        &params.gd_stage(),
        tracker,
        0,
        Some(&mut provider),
    )
}

/// Features Φ = σ(X Wᵀ + 1bᵀ) of one chunk, rows×m, in f64.
fn features<T: Real>(
    x: &[T],
    rows: usize,
    d: usize,
    w: &[T],
    b: &[T],
    activation: Activation,
) -> Vec<f64> {
    let m = b.len();
    let mut z = vec![T::of(0.0); rows * m];
    let wt = MatRef::from_row_major_slice(w, m, d).transpose();
    matmul(
        MatMut::from_row_major_slice_mut(&mut z, rows, m),
        Accum::Replace,
        MatRef::from_row_major_slice(x, rows, d),
        wt,
        T::of(1.0),
        Par::rayon(0),
    );
    if activation == Activation::Logcosh {
        T::logcosh_rows(&mut z, b);
        return z.par_iter().map(|v| v.to()).collect();
    }
    z.par_iter()
        .enumerate()
        .map(|(k, &zv)| activation.scalar((zv + b[k % m]).to()))
        .collect()
}

/// Stage 2 over streamed D2: biases `b` given; returns (a, c, report).
pub fn stream_stage2<T: Real>(
    streams: &Streams<'_>,
    n2: usize,
    w: &[T],
    b: &[T],
    activation: Activation,
    cfg: &Stage2Config,
) -> Result<(Vec<f64>, f64, Stage2Report), TrainError> {
    let d = streams.target.d;
    let m = b.len();
    let mut sums = HeldOutSums::new(m, n2);
    streams.for_chunks::<T, TrainError>(Split::Stage2, n2, true, |start, n, x, y| {
        sums.add(start, &features(x, n, d, w, b, activation), y);
        Ok(())
    })?;
    sums.fit(cfg)
}

/// Normalised test error mean (f − y)²/Var(y) over the streamed test set, and Var(y).
pub fn stream_test_mse<T: Real>(
    streams: &Streams<'_>,
    n_test: usize,
    w: &[T],
    b: &[T],
    a: &[f64],
    c: f64,
    activation: Activation,
) -> (f64, f64) {
    let d = streams.target.d;
    let (mut sse, mut sy, mut syy) = (0.0, 0.0, 0.0);
    let _ = streams.for_chunks::<T, ()>(Split::Test, n_test, true, |_, n, x, y| {
        let phi = features(x, n, d, w, b, activation);
        for (i, row) in phi.chunks_exact(b.len()).enumerate() {
            let f = c + row.iter().zip(a).map(|(p, q)| p * q).sum::<f64>();
            sse += (f - y[i]).powi(2);
            sy += y[i];
            syy += y[i] * y[i];
        }
        Ok(())
    });
    let n = n_test as f64;
    let var = syy / n - (sy / n).powi(2);
    ((sse / n) / var.max(1e-300), var)
}

/// Fits the network on streamed data: stage 1, stage 2 and the test error, chunk by chunk.
pub fn fit_streaming(
    valid: &crate::config::ValidConfig,
    target: &Target,
    model: mim_model::TwoLayer,
    device: &Device,
    reporter: &mut crate::progress::Reporter,
) -> Result<crate::run::Fitted, crate::run::RunError> {
    match valid.config.dtype {
        mim_model::Precision::F32 => fit_typed::<f32>(valid, target, model, device, reporter),
        mim_model::Precision::F64 => fit_typed::<f64>(valid, target, model, device, reporter),
    }
}

fn fit_typed<T: Real + Element>(
    valid: &crate::config::ValidConfig,
    target: &Target,
    mut model: mim_model::TwoLayer,
    device: &Device,
    reporter: &mut crate::progress::Reporter,
) -> Result<crate::run::Fitted, crate::run::RunError> {
    use crate::seeds::{derive_seed, Purpose};
    use burn::module::Param;
    use mim_model::{from_host_1d, from_host_2d};
    let cfg = &valid.config;
    let (d, p) = (cfg.data.d, cfg.dtype);
    let streams = Streams {
        target,
        seed: derive_seed(cfg.seed, Purpose::Data),
        chunk: chunk_rows(d, cfg.data.chunk_rows),
    };
    let b0: Vec<T> = mim_model::to_host_as(&model.b.val());

    let mut tracker = Stage1Tracker::new(target, reporter, cfg.metrics.svd);
    let t1 = tracker.start;
    let trained = stream_stage1::<T>(
        &streams,
        valid.n1,
        &valid.stage1,
        cfg.stage1.centering(),
        valid.remove_linear,
        model.clone(),
        &mut tracker,
    )?;
    let w: Vec<T> = mim_model::to_host_as(&trained.w.val());
    let stage1_seconds = t1.elapsed().as_secs_f64();

    let t2 = std::time::Instant::now();
    let b: Vec<f64> = mim_train::stage2::draw_biases(
        cfg.stage2.bias,
        b0.len(),
        derive_seed(cfg.seed, Purpose::Bias),
        b0.iter().map(|v| v.to()).collect(),
    );
    let b_t: Vec<T> = b.iter().map(|&v| T::of(v)).collect();
    let (a, c, report) =
        stream_stage2(&streams, valid.n2, &w, &b_t, model.activation, &cfg.stage2)?;
    let stage2_seconds = t2.elapsed().as_secs_f64();
    let (test_mse, test_label_variance) =
        stream_test_mse(&streams, cfg.data.n_test, &w, &b_t, &a, c, model.activation);

    let m = b.len();
    let w64: Vec<f64> = w.iter().map(|v| v.to()).collect();
    model.w = Param::from_tensor(from_host_2d(&w64, m, d, device, p)).set_require_grad(false);
    model.b = Param::from_tensor(from_host_1d(&b, device, p)).set_require_grad(false);
    model.a = Param::from_tensor(from_host_1d(&a, device, p)).set_require_grad(false);
    model.c = Param::from_tensor(from_host_1d(&[c], device, p)).set_require_grad(false);
    Ok(crate::run::Fitted {
        model,
        power_iteration_cos: None,
        ridge_lambda: Some(report.lambda),
        train_mse: report.train_mse,
        test_mse,
        test_label_variance,
        stage1_seconds,
        stage2_seconds,
        step_lr: None,
    })
}
