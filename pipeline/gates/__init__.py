"""The regression gate: paired tests on per-prompt scores (``stats``), comparisons of two evaluations of a
benchmark (``compare``), and the verdict on a stage with what its policy does (``verdict``)."""

from pipeline.gates.compare import Comparison, compare_records, latest_records, prompt_scores, record_score
from pipeline.gates.stats import mcnemar_exact, paired_bootstrap_ci, paired_permutation_test, unpaired_z_test
from pipeline.gates.verdict import (
    POLICIES,
    TEST_LABELS,
    Action,
    BenchmarkCheck,
    GateResult,
    check_stage,
    format_p_value,
)

__all__ = [
    "POLICIES",
    "TEST_LABELS",
    "Action",
    "BenchmarkCheck",
    "Comparison",
    "GateResult",
    "check_stage",
    "compare_records",
    "format_p_value",
    "latest_records",
    "mcnemar_exact",
    "paired_bootstrap_ci",
    "paired_permutation_test",
    "prompt_scores",
    "record_score",
    "unpaired_z_test",
]
