//! Seeded, counter-based datasets `(x, y)` for each [`Split`], from one of two versioned
//! generators ([`Generator`]); a target's generator is [`Target::generator`].
//!
//! **v1** (the default). Rows are generated in fixed blocks of [`BLOCK_ROWS`] rows. Block `b` of split `s` under seed
//! `seed` has its own ChaCha8 generator: key = (`seed`, split tag, domain constant), stream
//! = `b`. Within a block, row by row, it draws `d` standard normals for `x` and then one standard
//! normal `ε` for the label noise (always drawn, even when `noise = 0`). Consequences:
//! - rows are bit-identical however they are chunked ([`Target::sample_rows`]) and whatever
//!   the number of rayon threads (blocks are filled in parallel, each from its own generator);
//! - `sample(split, n, seed)` is a prefix of `sample(split, n', seed)` for `n ≤ n'`;
//! - splits, and the stream that draws `U` ([`Target::new`]), use distinct ChaCha keys, hence
//!   independent streams.
//!
//! **v2** ([`crate::philox`]): every value of row `i` is a pure function of (split key, `i`,
//! column), Philox4x32-10 counters and an f32 Box–Muller transform, vectorised. The same three
//! properties hold, every row costs only itself (no block prefix), and the values are drawn
//! several vector lanes at a time. Values are f32, exact in f64.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::philox;
use crate::target::Target;

/// Rows per generator block.
pub const BLOCK_ROWS: usize = 1024;

/// Split tag of the stream that draws `U`.
pub(crate) const U_STREAM_TAG: u64 = 0;

/// Domain-separation bytes in every ChaCha key of this crate.
const DOMAIN: &[u8; 16] = b"mim-data/rng/v1\0";

/// Which independent dataset to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Stage-1 training data `D1`.
    Stage1,
    /// Stage-2 training data `D2`.
    Stage2,
    /// Held-out test data.
    Test,
    /// Any further independent stream, e.g. validation sets.
    Custom(u32),
}

impl Split {
    /// Tag mixed into the generator key: `Stage1 = 1`, `Stage2 = 2`, `Test = 3`,
    /// `Custom(k) = 2^32 + k` (`0` is reserved for `U`).
    pub fn stream_tag(self) -> u64 {
        match self {
            Split::Stage1 => 1,
            Split::Stage2 => 2,
            Split::Test => 3,
            Split::Custom(k) => (1u64 << 32) + u64::from(k),
        }
    }
}

/// Generator for block `stream` of the stream tagged `tag`: ChaCha8 with key
/// `seed (8 bytes LE) ‖ tag (8 bytes LE) ‖ domain constant (16 bytes)` and stream `stream`.
/// The key is injective in `(seed, tag)`, so distinct pairs give independent streams.
pub(crate) fn block_rng(seed: u64, tag: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&tag.to_le_bytes());
    key[16..].copy_from_slice(DOMAIN);
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// Which generator draws the rows of a dataset. Results name it (`config.toml`'s
/// `data.generator`, `summary.json`'s `data_generator`), so rows of either version can always be
/// regenerated; a config without the key means v1, the generator of every earlier result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// ChaCha8 per block of [`BLOCK_ROWS`] rows, `rand_distr` ziggurat normals in f64.
    #[default]
    V1,
    /// Philox4x32-10 counters per value and an f32 Box–Muller transform ([`crate::philox`]).
    V2,
}

impl Generator {
    /// `"v1"` or `"v2"`, as in a config.
    pub fn name(self) -> &'static str {
        match self {
            Generator::V1 => "v1",
            Generator::V2 => "v2",
        }
    }

    /// Whether this is v1, the generator a config without `data.generator` means.
    pub fn is_v1(&self) -> bool {
        *self == Generator::V1
    }
}

impl std::fmt::Display for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `n` samples: inputs `x` (`n×d`, row-major) and labels `y` (length `n`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Number of rows.
    pub n: usize,
    /// Input dimension.
    pub d: usize,
    /// Inputs, `n×d` row-major.
    pub x: Vec<f64>,
    /// Labels `y_i = scale·g(U x_i) + noise·ε_i`.
    pub y: Vec<f64>,
}

impl Dataset {
    /// Input row `i` (length `d`).
    ///
    /// # Panics
    /// If `i ≥ n`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }
}

/// The label and the cast copy of one v2 row (`Target::finish_row`), compiled for the widest instruction set this CPU has (pulp dispatch; the baseline x86-64
/// build would use 2-lane SSE2). Rust never contracts or reorders floating-point operations,
/// so every instruction set computes the same values as [`Target::signal`] does.
struct FinishV2Row<'a, T, C> {
    target: &'a Target,
    x_row: &'a [f32],
    eps: f64,
    z: &'a mut [f64],
    y: Option<&'a mut f64>,
    out: Option<&'a mut [T]>,
    cast: &'a C,
}

impl<T: Copy, C: Fn(f64) -> T> pulp::WithSimd for FinishV2Row<'_, T, C> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            target,
            x_row,
            eps,
            z,
            y,
            out,
            cast,
        } = self;
        target.finish_row(x_row, eps, z, y, out, cast);
    }
}

/// The part of one block a call needs: block-local rows `lo..hi`, written to `x` and `y`
/// (each when kept).
struct BlockJob<'a, T> {
    block: usize,
    lo: usize,
    hi: usize,
    x: Option<&'a mut [T]>,
    y: Option<&'a mut [f64]>,
}

impl Target {
    /// The first `n` rows of split `split` under `seed`; same as `sample_rows(split, seed, 0, n)`.
    ///
    /// # Panics
    /// If `n·d` overflows `usize` (or memory runs out).
    pub fn sample(&self, split: Split, n: usize, seed: u64) -> Dataset {
        self.sample_rows(split, seed, 0, n)
    }

    /// Rows `start..start+len` of the dataset of split `split` under `seed`, bit-identical to
    /// the same rows of [`Target::sample`] with any `n ≥ start + len` (for streaming).
    ///
    /// Row `i` lies in block `b = i / BLOCK_ROWS`; under v1 the rows of a block before `start`
    /// are generated and discarded, so the cost is at most one extra block per call (v2 draws
    /// only the rows asked for). Blocks are
    /// filled in parallel with rayon; results do not depend on the number of threads.
    ///
    /// # Panics
    /// If `start + len` or `len·d` overflows `usize` (or memory runs out).
    pub fn sample_rows(&self, split: Split, seed: u64, start: usize, len: usize) -> Dataset {
        let mut out = Dataset::default();
        self.sample_rows_into(split, seed, start, len, &mut out);
        out
    }

    /// [`Target::sample_rows`] written into `out`, reusing its buffers (streaming passes
    /// regenerate chunk after chunk of the same size: no allocation, no page faults).
    ///
    /// # Panics
    /// As [`Target::sample_rows`].
    pub fn sample_rows_into(
        &self,
        split: Split,
        seed: u64,
        start: usize,
        len: usize,
        out: &mut Dataset,
    ) {
        self.sample_rows_as(split, seed, start, len, Some(&mut out.x), &mut out.y, |v| v);
        (out.n, out.d) = (len, self.d);
    }

    /// The inputs of [`Target::sample_rows`] alone, as `cast(x_ij)` (len·d, row-major, into
    /// `x`, reused), without the labels: a pass that already holds y (a streamed spectral
    /// product, a stage-1 step after the label pass) skips the projection U x of every row,
    /// which at r = 2 costs a third of drawing the row.
    ///
    /// # Panics
    /// As [`Target::sample_rows`].
    pub fn sample_inputs_as<T: Copy + Send>(
        &self,
        split: Split,
        seed: u64,
        start: usize,
        len: usize,
        x: &mut Vec<T>,
        cast: impl Fn(f64) -> T + Sync,
    ) {
        self.sample_parts(split, seed, start, len, Some(x), None, cast);
    }

    /// The rows of [`Target::sample_rows`] with x written as `cast(x_ij)` into `x` (e.g. f32
    /// for a kernel: bit-identical to casting `sample_rows`'s x, since the labels are computed
    /// from the row as drawn, f64 for v1 and f32 for v2, before it is cast), or not written at
    /// all when `x` is `None` (a pass that needs only y). Both buffers are resized to the
    /// rows and reused. Streaming regenerates D1 on every step: at d = 16 384 writing the f64
    /// rows and casting them in a second pass moved 20 bytes per value through memory, this 4.
    ///
    /// # Panics
    /// As [`Target::sample_rows`].
    #[allow(clippy::too_many_arguments)]
    pub fn sample_rows_as<T: Copy + Send>(
        &self,
        split: Split,
        seed: u64,
        start: usize,
        len: usize,
        x: Option<&mut Vec<T>>,
        y: &mut Vec<f64>,
        cast: impl Fn(f64) -> T + Sync,
    ) {
        self.sample_parts(split, seed, start, len, x, Some(y), cast);
    }

    /// [`Target::sample_rows_as`] with the labels optional too (`None`: not computed).
    #[allow(clippy::too_many_arguments)]
    fn sample_parts<T: Copy + Send>(
        &self,
        split: Split,
        seed: u64,
        start: usize,
        len: usize,
        mut x: Option<&mut Vec<T>>,
        y: Option<&mut Vec<f64>>,
        cast: impl Fn(f64) -> T + Sync,
    ) {
        let d = self.d;
        let end = start
            .checked_add(len)
            .expect("sample_rows: start + len overflows usize");
        // Every kept row is overwritten below; resizing only sets the length.
        if let Some(x) = x.as_deref_mut() {
            x.resize(
                len.checked_mul(d)
                    .expect("sample_rows: len·d overflows usize"),
                cast(0.0),
            );
        }
        let mut y_rest = y.map(|y| {
            y.resize(len, 0.0);
            &mut y[..]
        });
        let mut jobs = Vec::with_capacity(len.div_ceil(BLOCK_ROWS) + 1);
        let mut x_rest = x.map(|x| &mut x[..]);
        let mut row = start;
        while row < end {
            let block = row / BLOCK_ROWS;
            let lo = row % BLOCK_ROWS;
            let hi = BLOCK_ROWS.min(end - block * BLOCK_ROWS);
            let count = hi - lo;
            let xb = x_rest.take().map(|xr| {
                let (xb, rest) = xr.split_at_mut(count * d);
                x_rest = Some(rest);
                xb
            });
            let yb = y_rest.take().map(|yr| {
                let (yb, rest) = yr.split_at_mut(count);
                y_rest = Some(rest);
                yb
            });
            jobs.push(BlockJob {
                block,
                lo,
                hi,
                x: xb,
                y: yb,
            });
            row += count;
        }
        let tag = split.stream_tag();
        jobs.into_par_iter()
            .for_each(|job| self.fill_block(seed, tag, job, &cast));
    }

    /// Generate the kept rows `lo..hi` of block `job.block` with the target's generator: each
    /// row is drawn into one row buffer (f64 for v1, f32 for v2), its label computed from it,
    /// then cast into `x`.
    fn fill_block<T: Copy>(
        &self,
        seed: u64,
        tag: u64,
        job: BlockJob<'_, T>,
        cast: &impl Fn(f64) -> T,
    ) {
        match self.generator {
            Generator::V1 => self.fill_block_v1(seed, tag, job, cast),
            Generator::V2 => self.fill_block_v2(seed, tag, job, cast),
        }
    }

    /// The label of a kept row (f64, or f32 widened exactly) with noise draw `eps`, from its
    /// projection `z = U x` (computed into `z`, the caller's buffer), when y is kept, and the
    /// row cast into `out` when x is kept.
    #[inline(always)]
    fn finish_row<X: Copy + Into<f64>, T: Copy>(
        &self,
        x_row: &[X],
        eps: f64,
        z: &mut [f64],
        y: Option<&mut f64>,
        out: Option<&mut [T]>,
        cast: &impl Fn(f64) -> T,
    ) {
        if let Some(y) = y {
            self.project(x_row, z);
            *y = self.scale * self.link.eval(z) + self.noise * eps;
        }
        if let Some(out) = out {
            out.iter_mut()
                .zip(x_row)
                .for_each(|(o, &v)| *o = cast(v.into()));
        }
    }

    /// v2: rows `lo..hi` of the block, each from its own counters ([`crate::philox`]).
    fn fill_block_v2<T: Copy>(
        &self,
        seed: u64,
        tag: u64,
        job: BlockJob<'_, T>,
        cast: &impl Fn(f64) -> T,
    ) {
        let d = self.d;
        let key = philox::split_key(seed, tag);
        let mut values = vec![0.0f32; philox::row_len(d)];
        let mut z = vec![0.0; self.r];
        let BlockJob {
            block,
            lo,
            hi,
            mut x,
            mut y,
        } = job;
        for row in lo..hi {
            philox::gaussian_row(key, (block * BLOCK_ROWS + row) as u64, &mut values);
            let kept = row - lo;
            let out = x.as_deref_mut().map(|x| &mut x[kept * d..(kept + 1) * d]);
            pulp::Arch::new().dispatch(FinishV2Row {
                target: self,
                x_row: &values[..d],
                eps: f64::from(values[d]),
                z: &mut z,
                y: y.as_deref_mut().map(|y| &mut y[kept]),
                out,
                cast,
            });
        }
    }

    /// v1: block-local rows `0..hi` from the block's ChaCha8 stream, keeping rows `lo..hi`.
    fn fill_block_v1<T: Copy>(
        &self,
        seed: u64,
        tag: u64,
        job: BlockJob<'_, T>,
        cast: &impl Fn(f64) -> T,
    ) {
        let d = self.d;
        let mut rng = block_rng(seed, tag, job.block as u64);
        let mut x_row = vec![0.0; d];
        let mut z = vec![0.0; self.r];
        let BlockJob {
            lo,
            hi,
            mut x,
            mut y,
            ..
        } = job;
        for row in 0..hi {
            for v in x_row.iter_mut() {
                *v = rng.sample(StandardNormal);
            }
            let eps: f64 = rng.sample(StandardNormal);
            if row >= lo {
                let kept = row - lo;
                let out = x.as_deref_mut().map(|x| &mut x[kept * d..(kept + 1) * d]);
                let yk = y.as_deref_mut().map(|y| &mut y[kept]);
                self.finish_row(&x_row, eps, &mut z, yk, out, cast);
            }
        }
    }
}
