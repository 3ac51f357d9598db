"""Heavy-mode evaluation: majority voting and GenSelect over a benchmark's n samples, next to pass@1.

=============  ================================================================================
grouping.py    answer classes by the domain's verifier (math-verify equivalence, program outputs)
               and the majority vote over them
genselect.py   the selection prompt, the parsing of the selector's choice, the knockout tournament
modes.py       every mode's per-prompt outcome and summary (score, stderr, cost) for the eval record
=============  ================================================================================

The evaluation (``pipeline.evaluation``) generates the samples, scores and groups them once on the
main process, and runs GenSelect's selection prompts through the same engine; this package holds the
logic, free of processes and engines, so that it is tested on its own (docs/evaluation.md, "Heavy mode").
"""

from pipeline.selection.genselect import Judgment, Selected, parse_choice, run_genselect, selection_prompt
from pipeline.selection.grouping import GROUPED_REWARDS, Grouping, group_answers, majority_pick
from pipeline.selection.modes import heavy_record, mean_stderr

__all__ = [
    "GROUPED_REWARDS",
    "Grouping",
    "Judgment",
    "Selected",
    "group_answers",
    "heavy_record",
    "majority_pick",
    "mean_stderr",
    "parse_choice",
    "run_genselect",
    "selection_prompt",
]
