#!/usr/bin/env python3
"""Regenerates worker/tests/fixtures/text_metrics_reference.json: ROUGE and
BLEU numbers of fixed (reference, output) pairs computed by the reference
implementations, which worker/tests/text_metrics_reference.rs compares with
vigil's scorers.

    bash scripts/text-metrics-reference.sh   # installs the pinned packages, runs this

References (pinned in the .sh):
  - rouge-score 0.1.2 (Google): RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
  - sacrebleu 2.6.0: sentence_bleu (defaults: 13a, exp smoothing, effective order),
    BLEU(...).sentence_score for the other settings, corpus_bleu (defaults)
"""
import json
import sys
from importlib.metadata import version

from rouge_score import rouge_scorer
import sacrebleu
from sacrebleu.metrics import BLEU

PAIRS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("The cat sat on the mat.", "The cat lay on the mat."),
    ("the cat was found under the bed", "the cat was under the bed"),
    ("Police killed the gunman.", "The gunman was shot down by police."),
    ("It costs $3.50, or 3,50 EUR.", "It costs $3.50 (about 3,50 EUR)."),
    ("Pages 10-20 cover U.S. history; see e.g. chapter 3.", "Pages 10-20 cover U.S. history, e.g. chapter 3."),
    ("Tom &amp; Jerry &lt;3 &quot;cheese&quot;", "Tom & Jerry <3 \"cheese\""),
    ("A well-\nknown fact\nspans lines.", "A well-known fact spans lines."),
    ("Café naïve façade ΣΑΣ résumé", "cafe naive facade σας resume"),
    ("Don't stop believing!", "Do not stop believing"),
    ("", "Something with no reference."),
    ("Something with no output.", ""),
    ("!!! ???", "... ,,,"),
    ("a b c", "a b d"),
    ("one", "one"),
    ("the the the the the the the", "the cat"),
    ("He said: «Bonjour» — and left<skipped>.", "He said «Bonjour» and left."),
    ("Numbers 1,000,000 and 2.5x and 3-4 and -5", "numbers 1,000,000 and 2.5 x and 3 - 4 and -5"),
    ("tab\tseparated\u001fwords\u00a0here", "tab separated words here"),
    ("The quick brown fox jumps over the lazy dog near the river bank at dawn.",
     "At dawn, a quick brown fox jumped over a lazy dog by the river."),
    ("Summaries should be concise and faithful to the source document.",
     "A summary must be faithful to its source and concise."),
    ("ÉCOLE İstanbul KELVIN \u212a", "ecole istanbul kelvin k"),
    ("trailing spaces   \n", "trailing spaces"),
    ("x" * 3 + " y z", "xxx y z w"),
]

BLEU_SETTINGS = {
    "sentence_default": dict(),
    "none": dict(smooth_method="none"),
    "floor": dict(smooth_method="floor"),
    "floor_0.5": dict(smooth_method="floor", smooth_value=0.5),
    "add_k": dict(smooth_method="add-k"),
    "lowercase": dict(lowercase=True),
    "tokenize_none": dict(tokenize="none"),
}


def main(out_path):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    cases = []
    for reference, output in PAIRS:
        r = scorer.score(reference, output)
        case = {
            "reference": reference,
            "output": output,
            "rouge": {k: [v.precision, v.recall, v.fmeasure] for k, v in r.items()},
            "bleu": {},
        }
        for name, kw in BLEU_SETTINGS.items():
            metric = BLEU(effective_order=True, **kw)
            s = metric.sentence_score(output, [reference])
            case["bleu"][name] = {
                "score": s.score,
                "counts": list(s.counts),
                "totals": list(s.totals),
                "sys_len": s.sys_len,
                "ref_len": s.ref_len,
            }
        # The convenience function the docs name, for the default setting.
        assert abs(sacrebleu.sentence_bleu(output, [reference]).score - case["bleu"]["sentence_default"]["score"]) < 1e-12
        cases.append(case)
    outputs = [o for _, o in PAIRS]
    refs = [[r for r, _ in PAIRS]]
    corpus = sacrebleu.corpus_bleu(outputs, refs)
    doc = {
        "generated_by": "scripts/text-metrics-reference.py",
        "implementations": {
            "rouge-score": version("rouge-score"),
            "sacrebleu": version("sacrebleu"),
        },
        "cases": cases,
        "corpus_bleu_default": {
            "score": corpus.score,
            "bp": corpus.bp,
            "precisions": list(corpus.precisions),
            "sys_len": corpus.sys_len,
            "ref_len": corpus.ref_len,
        },
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "worker/tests/fixtures/text_metrics_reference.json")
