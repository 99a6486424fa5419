//! Using mim as a library: build a config in code, sweep T1 by hand, read the summaries.
//!
//! ```sh
//! cargo run --release -p mim-run --example library
//! ```

use mim_run::{train, RunConfig, RunOptions};
use mim_train::Auto;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = RunConfig::default();
    config.data.d = 100;
    config.data.link = "h4(z1)+h4(z2)".into();
    config.data.alpha1 = Some(16.0);
    config.data.n_test = 2000;
    config.model.width = 128;
    config.metrics.power_iteration = false;
    println!(
        "{:>3} {:>15} {:>17}",
        "T1", "alignment_mean", "subspace_cos_min"
    );
    for t1 in [0, 1, 2, 4, 8] {
        config.stage1.steps = Auto::Value(t1);
        let valid = config.validate()?;
        let out = std::env::temp_dir().join(format!("mim-example-t1-{t1}"));
        let summary = train(
            &valid,
            &RunOptions {
                out_dir: out,
                quiet: true,
            },
        )?;
        println!(
            "{t1:>3} {:>15.3} {:>17.3}",
            summary.w.alignment_mean, summary.w.subspace_cos_min
        );
    }
    Ok(())
}
