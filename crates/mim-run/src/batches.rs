//! Minibatches for the `joint` baseline: reused from D1 (a seeded shuffle per epoch) or fresh
//! (rows of an independent counter-based stream, so step t always sees the same batch).

use burn::tensor::{Device, Tensor};
use mim_data::{Dataset, Split, Target};
use mim_model::{from_host_1d, from_host_2d, Precision};
use mim_train::{BatchSource, Batches, JointConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The stream of fresh joint-training samples (independent of D1, D2 and the test set).
pub const FRESH_SPLIT: Split = Split::Custom(100);

/// Batch source of the joint baseline.
pub struct JointBatches<'a> {
    target: &'a Target,
    d1: &'a Dataset,
    kind: Batches,
    batch_size: usize,
    seed: u64,
    order: Vec<usize>,
    device: Device,
    precision: Precision,
}

impl<'a> JointBatches<'a> {
    /// A source over `d1` (reused) or over fresh samples of `target` (fresh), from `seed`.
    pub fn new(
        target: &'a Target,
        d1: &'a Dataset,
        cfg: &JointConfig,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Self {
        Self::of(
            target,
            d1,
            cfg.batches,
            cfg.batch_size,
            seed,
            device,
            precision,
        )
    }

    /// Minibatches of `batch_size` rows: reshuffled epochs over `data` (reused), or rows of an
    /// independent stream of `target` (fresh), from `seed`.
    pub fn of(
        target: &'a Target,
        data: &'a Dataset,
        kind: Batches,
        batch_size: usize,
        seed: u64,
        device: &Device,
        precision: Precision,
    ) -> Self {
        Self {
            target,
            d1: data,
            kind,
            batch_size,
            seed,
            order: Vec::new(),
            device: device.clone(),
            precision,
        }
    }

    fn upload(&self, x: &[f64], y: &[f64]) -> (Tensor<2>, Tensor<1>) {
        let b = y.len();
        (
            from_host_2d(x, b, self.target.d, &self.device, self.precision),
            from_host_1d(y, &self.device, self.precision),
        )
    }
}

impl BatchSource for JointBatches<'_> {
    fn batch(&mut self, step: usize) -> (Tensor<2>, Tensor<1>) {
        let b = self.batch_size;
        match self.kind {
            Batches::Fresh => {
                let ds = self
                    .target
                    .sample_rows(FRESH_SPLIT, self.seed, (step - 1) * b, b);
                self.upload(&ds.x, &ds.y)
            }
            Batches::Reused => {
                let n = self.d1.n;
                let b = b.min(n);
                let per_epoch = n / b;
                let (epoch, k) = ((step - 1) / per_epoch, (step - 1) % per_epoch);
                if k == 0 {
                    self.order = (0..n).collect();
                    self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                        self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
                    ));
                }
                let rows = &self.order[k * b..(k + 1) * b];
                let x: Vec<f64> = rows
                    .iter()
                    .flat_map(|&i| self.d1.row(i).iter().copied())
                    .collect();
                let y: Vec<f64> = rows.iter().map(|&i| self.d1.y[i]).collect();
                self.upload(&x, &y)
            }
        }
    }
}
