"""Evaluate one checkpoint on a recipe's benchmarks: the ``cascade-evaluate`` command as a script.

    python launch/evaluate.py recipe=tiny checkpoint=runs/tiny/stages/05-if_rl/final
    python launch/evaluate.py recipe=tiny checkpoint=math_rl                 # a stage of runs/<run.name>
    accelerate launch --num_processes 2 launch/evaluate.py recipe=tiny checkpoint=… benchmarks=math,code out=m.json

``benchmarks=`` picks some (default: all of the recipe); ``out=`` writes the eval record (default:
print the scores only). Other arguments are recipe overrides, as for launch/cascade.py.
"""

import sys

from pipeline.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main(sys.argv[1:]))
