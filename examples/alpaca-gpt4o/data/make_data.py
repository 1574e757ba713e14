"""Rebuild ``alpaca_eval_gpt4o_short.jsonl``: the N AlpacaEval records (gpt-4o-2024-05-13's answers) with the
shortest instruction + output in characters (ties by position), kept in source order, fields unchanged.

    python examples/alpaca-gpt4o/data/make_data.py [N=180] [--source PATH] [--out PATH]

The source is AlpacaEval's ``results/gpt-4o-2024-05-13/model_outputs.json`` (tatsu-lab/alpaca_eval, CC BY-NC
4.0), by default the copy in ``../shared/data/alpaca_eval/`` beside the checkout. N=140 gives the example's
earlier 140-record file byte for byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2].parent / "shared" / "data" / "alpaca_eval" / "gpt-4o-2024-05-13.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=180, help="Records to keep (default 180).")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="AlpacaEval gpt-4o outputs (JSON list).")
    parser.add_argument("--out", type=Path, default=HERE / "alpaca_eval_gpt4o_short.jsonl")
    args = parser.parse_args(argv)
    rows = json.loads(args.source.read_text(encoding="utf-8"))
    size = [len(r["instruction"]) + len(r["output"]) for r in rows]
    keep = set(sorted(range(len(rows)), key=lambda i: (size[i], i))[:args.n])
    with args.out.open("w", encoding="utf-8") as fh:
        for i, row in enumerate(rows):
            if i in keep:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(keep)} records, instruction + output at most {max(size[i] for i in keep)} characters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
