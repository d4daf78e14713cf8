"""Whether the trainer's compiled program at a grid point is the same before and after a
change: XLA's optimised HLO of `train` (the cartpole preset, NUM_RUNS runs of NUM_ENVS envs),
its instructions sorted, with names, metadata and stack frames dropped, written to OUT.

    PYTHONPATH=BEFORE_TREE python same_program.py 64 1 before64.txt
    PYTHONPATH=AFTER_TREE  python same_program.py 64 1 after64.txt
    cmp before64.txt after64.txt && echo identical
"""

import re
import sys

import jax

from purejaxppo import make_train
from purejaxppo.config import stack_hyperparams
from purejaxppo.presets import PRESETS
from purejaxppo.runs.placement import LOCAL_RUNS


def compiled_train(trainer, args):
    """`train` compiled as the tree at hand compiles it (before issue 24 or after)."""
    try:
        from purejaxppo.runs.compile import compile_program, trainer_program
    except ImportError:
        from purejaxppo.runs.compile import compile_trainer_program

        return compile_trainer_program(trainer, trainer, args).program
    options = trainer.tuning.compiler_options_dict()
    mapped = trainer_program(trainer, trainer, LOCAL_RUNS)
    return compile_program(mapped, args, compiler_options=options).program


def optimised_instructions(num_envs: int, num_runs: int) -> list[str]:
    config, hp = PRESETS["cartpole"]
    steps = max(131_072, num_envs * config.num_steps * 4)
    trainer = make_train(config.replace(total_timesteps=steps, num_envs=num_envs))
    args = (jax.random.split(jax.random.key(0), num_runs), stack_hyperparams([hp] * num_runs))
    text = re.sub(r", metadata=\{[^}]*\}", "", compiled_train(trainer, args).as_text())
    text = re.sub(r"%[\w.\-]+", "%x", text)
    text = re.sub(r"\b[\w.\-]+\.\d+\b", "n", text)
    text = re.sub(r"stack_frame_id=\d+", "", text)
    return sorted(line for line in text.splitlines() if " = " in line and "file_" not in line)


if __name__ == "__main__":
    lines = optimised_instructions(int(sys.argv[1]), int(sys.argv[2]))
    with open(sys.argv[3], "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"{len(lines)} instructions")
