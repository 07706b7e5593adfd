//! `vigil compare A B`: the paired comparison of two stored runs.

use crate::cli::CompareArgs;
use crate::commands::runs::{history_error, open_store};
use crate::exit::{CommandResult, Exit, ExitContext};
use vigil_coordinator::compare::{CompareOptions, compare};
use vigil_coordinator::{history, manifest, scores_store};
use vigil_protocol::Comparison;

pub async fn run(args: CompareArgs) -> CommandResult {
    let store = open_store(&args.store, "vigil-compare").await?;
    let base = history::find(&store.js, &args.baseline)
        .await
        .map_err(history_error)?;
    let cand = history::find(&store.js, &args.candidate)
        .await
        .map_err(history_error)?;
    let opts = CompareOptions {
        seed: args.seed,
        ..Default::default()
    };
    let mut comparison = match (
        scores_store::load(&store.js, &base.run_id).await,
        scores_store::load(&store.js, &cand.run_id).await,
    ) {
        (Ok(a), Ok(b)) => compare(&a, &b, &opts),
        (Err(e), _) | (_, Err(e)) => Comparison {
            note: Some(e.to_string()),
            ..Default::default()
        },
    };
    comparison.baseline_run_id = base.run_id.clone();
    comparison.baseline_source = "explicit".into();
    comparison.manifest_diffs =
        manifest::diff_optional(base.manifest.as_ref(), cand.manifest.as_ref());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&comparison).infra_error()?
        );
    } else {
        print!("{}", render(&comparison, &cand.run_id));
    }
    Ok(Exit::Ok)
}

/// The comparison as a text table.
pub fn render(c: &Comparison, candidate: &str) -> String {
    let mut out = format!("baseline  {}\ncandidate {candidate}\n", c.baseline_run_id);
    if c.manifest_diffs.is_empty() {
        out.push_str("manifests: identical determinants\n");
    } else {
        out.push_str("manifests DIFFER:\n");
        for d in &c.manifest_diffs {
            out.push_str(&format!(
                "  {}: {} -> {}\n",
                d.field, d.baseline, d.candidate
            ));
        }
    }
    if let Some(note) = &c.note {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(&format!(
        "{:<10} {:<10} {:<18} {:>6} {:>8} {:>8} {:>8} {:>18} {:>8} {:>4} {:>4}\n",
        "SCORER", "METRIC", "SLICE", "N", "BASE", "CAND", "DIFF", "95% CI", "P_HOLM", "P>F", "F>P"
    ));
    for t in &c.tests {
        out.push_str(&format!(
            "{:<10} {:<10} {:<18} {:>6} {:>8.4} {:>8.4} {:>+8.4} {:>18} {:>8.4} {:>4} {:>4}{}\n",
            t.scorer,
            t.metric,
            t.slice.as_deref().unwrap_or("(all)"),
            t.n,
            t.baseline,
            t.candidate,
            t.diff,
            format!("[{:+.4}, {:+.4}]", t.ci_low, t.ci_high),
            t.p_adjusted,
            t.pass_to_fail,
            t.fail_to_pass,
            if t.significant { "  *" } else { "" }
        ));
    }
    for t in c.tests.iter().filter(|t| t.slice.is_none()) {
        if !t.flipped_to_fail.is_empty() {
            out.push_str(&format!(
                "{} pass->fail: {}\n",
                t.scorer,
                t.flipped_to_fail.join(", ")
            ));
        }
        if !t.flipped_to_pass.is_empty() {
            out.push_str(&format!(
                "{} fail->pass: {}\n",
                t.scorer,
                t.flipped_to_pass.join(", ")
            ));
        }
    }
    out
}
