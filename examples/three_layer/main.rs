//! A user's own three-layer network (`net.rs`, outside mim's crates) trained by its own
//! layer-wise schedule through mim's library API, on the hierarchical target of
//! `configs/three-layer-hierarchical.toml` at a reduced size.
//!
//! ```sh
//! cargo run --release -p mim-run --example three_layer
//! ```

mod net;

use mim_run::{train_network, RunConfig, RunOptions};

/// The run: data, and the schedule over the network's own parameter paths.
const CONFIG: &str = r#"
seed = 0
[data]
d = 32
r = 4
link = "tanh(3*(h2(z1)+h2(z2)+h2(z3)+h2(z4))/2.8284271247461903)"
n1 = 8192
n2 = 4096
n3 = 4096
n_test = 4096
[data.features]
q = "(h2(z1)+h2(z2)+h2(z3)+h2(z4))/2.8284271247461903"

[[schedule]]            # layer 1: the paper's stage 1, through the paired ±1 readout of layer 1
name = "layer1"
train = ["w1"]
head = 1
steps = 3
weight_decay = "inverse_lr"
mode = "normalized"
loss = "huber"
center_labels = true

[[schedule]]            # layer 2 from zero on fresh data, W1 frozen, readout fixed at ±1
name = "layer2"
reinit = { b1 = "gaussian", w2 = "zero" }
train = ["w2"]
data = "D2"
steps = 60
lr = 1e-4
final_row_norm = 1.0

[[schedule]]            # readout by ridge on a third split
name = "readout"
reinit = { b2 = "gaussian" }
data = "D3"
solver = "ridge"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let table = mim_run::config::parse_toml(CONFIG, "three_layer example")?;
    let valid = RunConfig::from_table(table)?.validate_custom()?;
    let d = valid.config.data.d;
    let out = std::env::temp_dir().join("mim-example-three-layer");
    let summary = train_network(
        &valid,
        &RunOptions {
            out_dir: out.clone(),
            quiet: false,
        },
        |device, seed, precision| net::ThreeLayer::init(d, 256, 32, 1e-3, seed, device, precision),
    )?;
    println!("run folder: {}", out.display());
    for stage in &summary.schedule {
        println!(
            "{:>8}: {} on {} ({:.2} s)",
            stage.name,
            stage.kind,
            stage.train.join(", "),
            stage.seconds
        );
    }
    println!(
        "test_mse {:.3}  alignment_mean {:.3}  feature R² of q per layer {:?}",
        summary.test_mse,
        summary.w.alignment_mean,
        summary.feature_r2.get("q")
    );
    Ok(())
}
