"""Mutation testing for one module: which small changes to its arithmetic and logic do its tests not notice?

    .venv/bin/python bench/mutants.py pipeline/stats/paired.py tests/unit/test_aggregate.py --jobs 4

Each mutant changes one thing (comparison flips ``<``/``<=``, ``>``/``>=``, ``==``/``!=``; ``+``/``-`` and ``*``/``/``,
also in ``+=``; ``/ 2`` removed; numeric constants off by one: 0.5 -> 0.6, 2 -> 1, any other n -> n + 1;
``min``/``max``; ``and``/``or``; ``not`` removed; a boolean ``return`` negated), then the selected tests run with
``-x -q`` and a timeout. A mutant the tests pass is a survivor: either the tests miss a behaviour or the change is
equivalent. The module is mutated only in scratch copies of the working tree (one per job), never in the tree
itself, and every copy gets its original text back in a ``finally``, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import ast
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Add: "+",
          ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.And: "and", ast.Or: "or"}
FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.And: ast.Or, ast.Or: ast.And}
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".duo", "*.egg-info")
# No bytecode: a mutant of the same size written within the same second would otherwise reuse a stale .pyc.
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _bumped(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return 0.6 if value == 0.5 else type(value)(1) if value == 2 else value + 1


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[id(v) for v in value].index(id(old))] = new
                return


def _returns_bool(fn: ast.AST, ret: ast.Return) -> bool:
    annotated = isinstance(fn, ast.FunctionDef) and isinstance(fn.returns, ast.Name) and fn.returns.id == "bool"
    v = ret.value
    return v is not None and (annotated or isinstance(v, (ast.Compare, ast.BoolOp)) or
                              (isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not)))


def mutations(tree: ast.AST) -> list[tuple[int, str, object]]:
    """``(line, label, apply)`` for every mutation of ``tree``; ``apply()`` edits ``tree`` in place."""
    out = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in FLIP:
                    new = FLIP[type(op)]
                    out.append((line, f"{SYMBOL[type(op)]} -> {SYMBOL[new]}",
                                lambda n=node, i=i, new=new: n.ops.__setitem__(i, new())))
        elif isinstance(node, (ast.BinOp, ast.AugAssign, ast.BoolOp)) and type(node.op) in FLIP:
            new = FLIP[type(node.op)]
            out.append((line, f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}",
                        lambda n=node, new=new: setattr(n, "op", new())))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value == 2:
            out.append((line, "/ 2 removed", lambda n=node: _replace(tree, n, n.left)))
        elif isinstance(node, ast.Constant) and _bumped(node.value) is not None:
            out.append((line, f"{node.value!r} -> {_bumped(node.value)!r}",
                        lambda n=node: setattr(n, "value", _bumped(n.value))))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            new = "max" if node.func.id == "min" else "min"
            out.append((line, f"{node.func.id} -> {new}", lambda n=node, new=new: setattr(n.func, "id", new)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((line, "not removed", lambda n=node: _replace(tree, n, n.operand)))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and _returns_bool(node, ret):
                    out.append((ret.lineno, "return negated",
                                lambda r=ret: setattr(r, "value", ast.UnaryOp(ast.Not(), r.value))))
    return out


def mutant_sources(source: str) -> list[tuple[int, str, str]]:
    """``(line, label, mutated source)`` for each mutant; a fresh parse per mutant keeps them independent."""
    out, seen = [], {ast.unparse(ast.parse(source))}
    for k, (line, label, _) in enumerate(mutations(ast.parse(source))):
        tree = ast.parse(source)
        mutations(tree)[k][2]()
        text = ast.unparse(ast.fix_missing_locations(tree))
        if text not in seen:  # the same text twice (or the original) is not a new mutant
            seen.add(text)
            out.append((line, label, text))
    return sorted(out, key=lambda m: m[0])


def run_tests(copy: Path, module: str, text: str, tests: list[str], timeout: float) -> tuple[str, str]:
    """Write ``text`` over ``module`` in ``copy``, run ``tests``, put the original back whatever happens.

    Returns ``(result, pytest's output)``."""
    path = copy / module
    original = path.read_text()
    try:
        path.write_text(text)
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
        done = subprocess.run(cmd, check=False, cwd=copy, env=ENV, capture_output=True, text=True, timeout=timeout)
        return "survived" if done.returncode == 0 else "killed", done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        return "killed (timeout)", ""
    finally:
        path.write_text(original)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="the file to mutate, relative to the repository root")
    ap.add_argument("tests", nargs="+", help="the pytest selection (paths, node ids, -k ...), after --")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="mutants tested at once, one scratch copy each")
    ap.add_argument("--timeout", type=float, default=120, help="seconds one test run may take")
    ap.add_argument("--survivors", action="store_true", help="list only the survivors")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill cleans up like Ctrl-C does
    source = (ROOT / args.module).read_text()
    lines = source.splitlines()
    mutants = mutant_sources(source)
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copies: queue.Queue[Path] = queue.Queue()
        for j in range(max(1, args.jobs)):
            copies.put(Path(shutil.copytree(ROOT, Path(tmp) / str(j), ignore=SKIP)))

        def one(text: str) -> tuple[str, str]:
            copy = copies.get()
            try:
                return run_tests(copy, args.module, text, args.tests, args.timeout)
            finally:
                copies.put(copy)

        start = time.monotonic()
        result, output = one(ast.unparse(ast.parse(source)))  # the unmutated (unparsed) module must pass
        if result != "survived":
            print(f"{output[-3000:]}\nthe selected tests fail on the unmutated {args.module}", file=sys.stderr)
            return 1
        pool = ThreadPoolExecutor(max(1, args.jobs))
        try:
            results = [r for r, _ in pool.map(one, [text for _, _, text in mutants])]
        finally:  # on Ctrl-C: start no more mutants; the running ones put their copy back themselves
            pool.shutdown(cancel_futures=True)
    print(f"{'line':>5}  {'mutation':<16} {'result':<17} source")
    for (line, label, _), result in zip(mutants, results):
        if result == "survived" or not args.survivors:
            print(f"{line:>5}  {label:<16} {result:<17} {lines[line - 1].strip()[:70]}")
    survived = results.count("survived")
    print(f"{args.module}: {len(mutants)} mutants, {len(mutants) - survived} killed, {survived} survived "
          f"({time.monotonic() - start:.0f} s, tests: {' '.join(args.tests)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
