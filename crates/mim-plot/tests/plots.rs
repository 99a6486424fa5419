//! Every figure kind renders to a non-empty SVG and PNG.

use mim_plot::rows::group_rows;
use mim_plot::*;
use serde_json::json;
use std::path::{Path, PathBuf};

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::var_os("MIM_PLOT_TEST_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("mim-plot-{}", std::process::id())))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Renders `fig` to `dir/name.svg` and `.png` and checks both files.
fn draw(fig: &impl Draw, dir: &Path, name: &str) {
    let fig = render(fig, &dir.join(name)).unwrap();
    let svg = std::fs::read_to_string(&fig.svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.len() > 1000,
        "{}",
        fig.svg.display()
    );
    let png = fig.png.as_ref().expect("PNG written");
    let bytes = std::fs::read(png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(fig.warnings.is_empty(), "{:?}", fig.warnings);
}

/// A single reference line.
fn one_line(at: f64, label: &str) -> Vec<RefLine> {
    vec![RefLine {
        at,
        label: label.into(),
    }]
}

fn rows() -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for a in [1, 2, 4, 8, 16, 32] {
        for t in [0, 1, 2, 4, 8, 16] {
            for seed in 0..3 {
                let rho = (0.1 + 0.15 * (a as f64).log2() * (1.0 - (-(t as f64) / 3.0).exp()))
                    .min(0.95)
                    + 0.02 * seed as f64;
                out.push(json!({
                    "params": {"data.alpha1": a, "stage1.steps": t, "seed": seed},
                    "summary": {"alignment_mean": rho, "test_mse": 1.0 - rho},
                }));
            }
        }
    }
    out
}

#[test]
fn all_figure_kinds_render() {
    let dir = out_dir("kinds");
    let rows = rows();
    let series = group_rows(&rows, "stage1.steps", Some("data.alpha1"), "alignment_mean").unwrap();
    draw(
        &LinePlot {
            title: "alignment vs T1".into(),
            x_label: "T1 (stage1.steps)".into(),
            y_label: "alignment_mean".into(),
            series,
            hlines: one_line(0.5, "level 0.5"),
            ..Default::default()
        },
        &dir,
        "line",
    );

    let series = group_rows(&rows, "data.alpha1", Some("stage1.steps"), "alignment_mean").unwrap();
    draw(
        &LinePlot {
            title: "alignment vs α".into(),
            x_label: "α".into(),
            y_label: "alignment_mean".into(),
            log_x: true,
            series,
            overlays: vec![Curve {
                label: "theory".into(),
                points: (0..40)
                    .map(|k| {
                        let a = 2f64.powf(k as f64 / 7.0);
                        (a, (1.0 - 1.0 / a).max(0.0))
                    })
                    .collect(),
            }],
            vlines: one_line(5.3, "α* = 5.3"),
            ..Default::default()
        },
        &dir,
        "logx",
    );

    let series = group_rows(&rows, "data.alpha1", Some("stage1.steps"), "alignment_mean").unwrap();
    let xs: Vec<String> = series[0].points.iter().map(|p| p.x_label.clone()).collect();
    let ys: Vec<String> = series
        .iter()
        .map(|s| s.label.trim_start_matches("T1 = ").to_string())
        .collect();
    let z = series
        .iter()
        .map(|s| s.points.iter().map(|p| Some(p.stats.mean)).collect())
        .collect();
    draw(
        &Heatmap {
            title: "phase diagram".into(),
            x_label: "α".into(),
            y_label: "T1".into(),
            z_label: "alignment".into(),
            x_values: xs,
            y_values: ys,
            z,
            z_range: None,
        },
        &dir,
        "heatmap",
    );

    let runs = (0..3)
        .map(|k| Trajectory {
            label: format!("run {k}"),
            points: (0..9)
                .map(|s| (s as f64, 1.0 - 0.01 * (s * k) as f64))
                .collect(),
        })
        .collect();
    draw(
        &TrajectoryPlot {
            title: "power_iteration_cos per step".into(),
            x_label: "stage-1 step".into(),
            y_label: "power_iteration_cos".into(),
            runs,
            log_y: false,
        },
        &dir,
        "traj",
    );

    draw(
        &BarPlot {
            title: "baselines".into(),
            x_label: "method".into(),
            y_label: "alignment_mean".into(),
            bars: vec![
                ("layerwise".into(), 0.72, 0.02),
                ("one_step".into(), 0.19, 0.01),
                ("random_features".into(), 0.09, 0.0),
            ],
            hlines: one_line(0.1, "chance √(r/d)"),
        },
        &dir,
        "bars",
    );

    // Marchenko–Pastur-like bulk plus two outliers.
    let mut ev: Vec<f64> = (0..400)
        .map(|k| {
            let u = (k as f64 + 0.5) / 400.0;
            0.2 + 1.6 * u * u
        })
        .collect();
    ev.extend([2.6, 3.1]);
    draw(
        &SpectrumPlot {
            title: "spectrum".into(),
            x_label: "eigenvalue".into(),
            eigenvalues: ev,
            bins: 0,
            edges: one_line(1.8, "bulk edge λ+ = 1.8"),
        },
        &dir,
        "spectrum",
    );
}

#[test]
fn empty_data_is_an_error() {
    let e = render(
        &LinePlot {
            title: "x".into(),
            ..Default::default()
        },
        &out_dir("empty").join("e"),
    );
    assert!(matches!(e, Err(PlotError::NoData(_))));
}

#[test]
fn viridis_ends_and_non_finite_input() {
    use mim_plot::plot::viridis;
    use plotters::style::RGBColor;
    assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
    assert_eq!(viridis(1.0), RGBColor(254, 232, 37));
    assert_eq!(viridis(-3.0), viridis(0.0));
    assert_eq!(viridis(7.0), viridis(1.0));
    assert_eq!(viridis(f64::NAN), viridis(0.0));
    assert_eq!(viridis(f64::INFINITY), viridis(0.0));
}
