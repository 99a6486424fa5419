//! Where progress goes: `metrics.jsonl` always; a progress bar on a terminal, plain lines
//! otherwise, nothing with `--quiet`.

use crate::results::JsonlWriter;
use crate::tracker::Stage1Record;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{self, IsTerminal};

enum Display {
    Bar(Option<ProgressBar>),
    Lines,
    Quiet,
}

/// Sends records to `metrics.jsonl` and to the user's screen.
pub struct Reporter {
    jsonl: JsonlWriter,
    display: Display,
    bar_stage: Option<String>,
}

impl Reporter {
    /// A reporter writing to `jsonl`; progress on stderr unless `quiet`.
    pub fn new(jsonl: JsonlWriter, quiet: bool) -> Self {
        let display = if quiet {
            Display::Quiet
        } else if io::stderr().is_terminal() {
            Display::Bar(None)
        } else {
            Display::Lines
        };
        Self {
            jsonl,
            display,
            bar_stage: None,
        }
    }

    /// A one-line message (warnings, stage changes).
    pub fn message(&mut self, text: &str) {
        match &self.display {
            Display::Bar(Some(bar)) => bar.println(text),
            Display::Quiet => {}
            _ => eprintln!("{text}"),
        }
    }

    /// Records a stage-1 step.
    pub fn stage1(&mut self, r: &Stage1Record, total: usize) -> io::Result<()> {
        let text = format!(
            "align {:.3}  cos_min {:.3}{}",
            r.w.alignment_mean,
            r.w.subspace_cos_min,
            r.power_iteration_cos
                .map(|c| format!("  power_cos {c:.3}"))
                .unwrap_or_default()
        );
        self.step(r, &r.stage, r.step, total, &text)
    }

    /// Records step `step` of `total` of stage `stage` (the line `record`) and shows `text`
    /// next to the progress. A new stage name starts a new bar.
    pub fn step<T: Serialize>(
        &mut self,
        record: &T,
        stage: &str,
        step: usize,
        total: usize,
        text: &str,
    ) -> io::Result<()> {
        self.jsonl.write(record)?;
        match &mut self.display {
            Display::Bar(bar) => {
                if self.bar_stage.as_deref() != Some(stage) {
                    *bar = None;
                    self.bar_stage = Some(stage.to_string());
                }
                let bar = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(total as u64);
                    b.set_style(
                        ProgressStyle::with_template(&format!(
                            "{stage} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{elapsed}})"
                        ))
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    b
                });
                bar.set_position(step as u64);
                bar.set_message(text.to_string());
                if step == total {
                    bar.finish();
                }
            }
            Display::Lines => eprintln!("{stage} step {step}/{total}  {text}"),
            Display::Quiet => {}
        }
        Ok(())
    }

    /// Records any other line of `metrics.jsonl`.
    pub fn record<T: Serialize>(&mut self, record: &T) -> io::Result<()> {
        self.jsonl.write(record)
    }

    /// The lines of `metrics.jsonl` so far (for checkpoints).
    pub fn lines(&self) -> &[String] {
        self.jsonl.lines()
    }
}
