"""One stage on several processes: ``duo finetune`` and ``duo infer`` re-run themselves
under ``accelerate launch``.

When a stage is asked for more than one process (``--processes`` / ``$DUO_PROCESSES``, else
``<stage>.launch.num_processes``) or names an accelerate config file (FSDP, DeepSpeed, several
machines), the ``duo`` process that was started holds the task's lock and runs ``python -m
accelerate.commands.launch ... -m pipeline <verb> ...``; the launched processes know it from
``$DUO_LAUNCHED`` and ``$LOCAL_RANK`` and never launch again. Only the main process (rank 0)
writes the artifact and publishes the stage's outputs; the others train (or answer their share of
the prompts) and return.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable

from ..config import Config
from ..config_types import LaunchConfig
from ..errors import DuoError
from ..flags import Flag

# Set for the launched processes: the duo process that started them holds the lock.
LAUNCHED_ENV = "DUO_LAUNCHED"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of processes, 1 or more")
    return value

PROCESSES = Flag("--processes",
                 "Processes to run the stage on, one per GPU; above 1 it re-runs itself under "
                 "accelerate launch (default: the stage's launch.num_processes in the config, 1).",
                 type=_positive,
                 metavar="N")


def rank() -> int:
    """This process's global rank (0 outside a launch)."""
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    """How many processes run this stage (1 outside a launch)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    return rank() == 0


def inside() -> bool:
    """True in a process started by a launcher (accelerate launch, torchrun, or duo's own relaunch)."""
    return any(os.environ.get(k) for k in (LAUNCHED_ENV, "LOCAL_RANK", "ACCELERATE_USE_CPU"))


def holds_no_lock() -> bool:
    """A launched process that must not take the task's lock: its parent ``duo`` holds it, or rank 0 does."""
    return bool(os.environ.get(LAUNCHED_ENV)) or (inside() and not is_main())


def processes(launch: LaunchConfig, args) -> int:
    return int(getattr(args, "processes", None) or launch.num_processes or 1)


def wanted(launch: LaunchConfig, args) -> bool:
    """Should this ``duo`` process re-run the stage under accelerate launch?"""
    return not inside() and (processes(launch, args) > 1 or bool(launch.config_file))


def command_line(cfg: Config, launch: LaunchConfig, n: int, verb: str, argv: list[str],
                 where: str) -> list[str]:
    """``python -m accelerate.commands.launch ... -m pipeline <verb> <argv>`` for ``n`` processes."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.config_file:
        path = cfg.resolve(launch.config_file)
        if not path.is_file():
            raise DuoError(f"{where}.config_file: no accelerate config file '{path}'")
        cmd += ["--config_file", str(path)]
    else:  # torchrun under accelerate: NCCL on GPUs, gloo on CPUs
        cmd += ["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no"]
    if n > 1 or not launch.config_file:
        cmd += ["--num_processes", str(n)]
    if launch.mixed_precision != "no" or not launch.config_file:
        cmd += ["--mixed_precision", launch.mixed_precision]
    if launch.main_process_port is not None:
        port = launch.main_process_port
    elif launch.config_file:
        port = None
    else:
        port = 0
    if port is not None:  # 0: a free port, so two runs on one machine never collide
        cmd += ["--main_process_port", str(port)]
    return cmd + ["-m", "pipeline", verb, *argv]


def stage_argv(args, round_no: int) -> list[str]:
    """The stage's own arguments for the launched processes (the environment reaches them as it is)."""
    argv = [str(args.config), "--round", str(round_no)]
    for item in getattr(args, "set", None) or []:
        argv += ["--set", item]
    return argv + (["--force"] if getattr(args, "force", False) else [])


def relaunch(cfg: Config, args, verb: str, launch: LaunchConfig, round_no: int) -> int:
    """Run ``duo <verb>`` on its processes under accelerate launch and wait; rank 0 writes and publishes."""
    n = processes(launch, args)
    cmd = command_line(cfg, launch, n, verb, stage_argv(args, round_no), f"{verb}.launch")
    print(f"{verb}: launching {n} processes: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, LAUNCHED_ENV: "1"}
    done = subprocess.run(cmd, env=env, check=False)
    if done.returncode != 0:
        raise DuoError(f"{verb}: {n} processes under accelerate launch failed (exit {done.returncode}); "
                       f"the first error is above")
    return 0


_WorkResult = tuple[list, int, float]  # (results, generated tokens, seconds)


def shard_and_gather(n: int, work: Callable[[list[int]], _WorkResult]) -> _WorkResult | None:
    """Run ``work`` on this process's share of items ``0..n-1`` (every
    ``world_size()``-th, from ``rank()``).

    ``work(indices) -> (results, generated tokens, seconds)``. The main process gets every result in
    item order, the summed tokens and the longest seconds; the other processes get None. One
    process: ``work`` on all items.
    """
    if world_size() == 1:
        return work(list(range(n)))
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState(cpu=not torch.cuda.is_available())
    mine = list(range(state.process_index, n, state.num_processes))
    results, tokens, seconds = work(mine)
    parts = gather_object([(mine, results, tokens, seconds)])
    if not state.is_main_process:
        return None
    out: list = [None] * n
    for indices, values, _, _ in parts:
        for i, value in zip(indices, values):
            out[i] = value
    return out, sum(p[2] for p in parts), max(p[3] for p in parts)
