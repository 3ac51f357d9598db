"""IFEval's 25 verifiable instructions, reimplemented to run offline, deterministically and in linear time.

``INSTRUCTIONS`` maps every instruction id (``"punctuation:no_comma"``, …) onto its argument schema and
check; :mod:`rewards.instruction` turns them into the ``instruction`` reward.
"""

from rewards.ifeval.checks import INSTRUCTIONS, RELATIONS, Instruction, InvalidArguments
from rewards.ifeval.text import DETECTOR, count_sentences, count_words, split_sentences

__all__ = [
    "DETECTOR",
    "INSTRUCTIONS",
    "RELATIONS",
    "Instruction",
    "InvalidArguments",
    "count_sentences",
    "count_words",
    "split_sentences",
]
