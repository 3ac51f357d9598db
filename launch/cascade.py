"""Run a Cascade recipe: the ``cascade`` command as a script, for ``accelerate launch``.

    accelerate launch launch/cascade.py recipe=tiny                     # one or many processes
    accelerate launch -q launch/cascade.py recipe=tiny                  # -q: Cascade's last sentence stays last
    python launch/cascade.py recipe=tiny stages.sft1.train.max_steps=5   # same as a single-process launch
    python launch/cascade.py recipe=tiny dry_run=true                    # print the plan and exit
    python launch/cascade.py recipe=tiny dry_run=data                    # load and check every data source
    python launch/cascade.py recipe=list                                 # the recipes, one line each

See :mod:`pipeline.cli` (the project is installed with ``pip install -e .``) and docs/console.md for what
it prints and the exit code of each way it ends.
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
