#!/usr/bin/env python3
"""Score a wgpt checkpoint with nanochat's own CORE code, as an outside check of `wgpt eval core`.

nanochat's `nanochat/gpt.py` (the model) and `nanochat/core_eval.py` (prompt rendering, batching,
scoring) run unchanged on the CPU in PyTorch; this script only loads the checkpoint's
`model.safetensors` (wgpt writes nanochat's state-dict names and layouts), wraps the checkpoint's
tokenizer.json in the two calls core_eval makes, and reads the task files the way nanochat's
`scripts/base_eval.py` does (shuffle with Random(1337), truncate to --max-per-task). Where the
data here differs from nanochat's eval bundle it follows wgpt's documented reading, written out
again below: prompts longer than the model's T are cropped to their last T tokens (core_eval's
rule for a model with `max_seq_len`, which wgpt follows because its model has no positions past
T), the CORE list is DCLM's `low_variance_datasets`, `local_data/X.jsonl` may be
`X.jsonl.gz`, and HellaSwag comes from its 6-lines-per-item text file.

    python3 -m venv /tmp/nc && /tmp/nc/bin/pip install torch safetensors tokenizers jinja2 pyyaml filelock
    git clone https://github.com/karpathy/nanochat /tmp/nanochat   # or any checkout
    /tmp/nc/bin/python tools/nanochat_core_check.py --nanochat /tmp/nanochat \
        --checkpoint RUN_DIR --eval-data ../shared/data/eval --max-per-task 100 --json out.json

It prints nanochat's per-task accuracy and centred score next to the ones a `wgpt eval core --json`
file holds (--wgpt-json), and exits 1 if any task's accuracy differs. Not part of CI: it needs
PyTorch and a nanochat checkout, neither of which the tests may assume.
"""

import argparse
import bz2
import csv
import gzip
import json
import os
import random
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nanochat", required=True, help="a nanochat checkout (the folder holding nanochat/)")
    p.add_argument("--checkpoint", required=True, help="a wgpt run directory or one of its step_NNNNNN folders")
    p.add_argument("--eval-data", default=os.environ.get("WGPT_EVAL_DATA", "../shared/data/eval"))
    p.add_argument("--max-per-task", type=int, default=-1)
    p.add_argument("--tasks", default=None, help="comma-separated labels (default: every present CORE task)")
    p.add_argument("--wgpt-json", default=None, help="a `wgpt eval core --json` file to compare against")
    p.add_argument("--json", default=None, help="write nanochat's results here")
    return p.parse_args()


def resolve_checkpoint(path):
    """(step folder, run folder): a run directory resolves through checkpoints/latest."""
    latest = os.path.join(path, "checkpoints", "latest")
    if os.path.isfile(latest):
        with open(latest) as f:
            step = f.read().strip()
        return os.path.join(path, "checkpoints", step), path
    return path, os.path.dirname(os.path.dirname(os.path.abspath(path)))


class HfTokenizer:
    """The two calls nanochat's core_eval makes on its tokenizer, over a tokenizer.json."""

    def __init__(self, path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(path)
        self.bos = self.tok.token_to_id("<|bos|>")
        if self.bos is None:
            sys.exit(f"{path}: no <|bos|> token")

    def get_bos_token_id(self):
        return self.bos

    def __call__(self, prompts, prepend=None):
        encoded = self.tok.encode_batch(prompts, add_special_tokens=False)
        head = [] if prepend is None else [prepend]
        return [head + e.ids for e in encoded]


def load_model(step_dir, nanochat_dir):
    sys.path.insert(0, nanochat_dir)
    import torch
    from safetensors.torch import load_file
    from nanochat.gpt import GPT, GPTConfig

    with open(os.path.join(step_dir, "meta.json")) as f:
        meta = json.load(f)
    mc = meta["model_config"]
    config = GPTConfig(**{k: mc[k] for k in GPTConfig.__dataclass_fields__ if k in mc})
    model = GPT(config)
    model.init_weights()  # the rotary tables (not in any state dict); every weight is replaced below
    state = load_file(os.path.join(step_dir, "model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.eval()
    # wgpt's model has no positions past its training length, so it crops longer prompts to their
    # last T tokens; core_eval applies that same rule to any model with a `max_seq_len` (GPT-2).
    model.max_seq_len = config.sequence_len
    torch.set_grad_enabled(False)
    return model, meta


def core_suite(eval_dir):
    """nanochat base_eval's task table, over DCLM's metadata as wgpt reads it."""
    import yaml

    core = os.path.join(eval_dir, "core")
    meta = os.path.join(core, "dclm_meta")
    with open(os.path.join(meta, "heavy.yaml")) as f:
        heavy = yaml.safe_load(f)["icl_tasks"]
    with open(os.path.join(meta, "additional_aggregation.json")) as f:
        labels = json.load(f)["low_variance_datasets"]
    with open(os.path.join(meta, "eval_meta_data.csv"), encoding="utf-8") as f:
        baselines = {row["Eval Task"]: float(row["Random baseline"]) for row in csv.DictReader(f)}
    tasks, missing = [], []
    for label in labels:
        task = next(t for t in heavy if t["label"] == label)
        if label in ("hellaswag", "hellaswag_zeroshot"):
            path = os.path.join(eval_dir, "hellaswag", "hellaswag_val_full.txt.bz2")
        else:
            stem = task["dataset_uri"].removeprefix("local_data/").removesuffix(".jsonl")
            path = os.path.join(core, stem + ".jsonl")
            if not os.path.isfile(path):
                path += ".gz"
        if not os.path.isfile(path):
            missing.append(label)
            continue
        meta_row = {
            "task_type": task["icl_task_type"],
            "num_fewshot": task["num_fewshot"][0],
            "continuation_delimiter": task.get("continuation_delimiter", " "),
        }
        tasks.append((label, path, meta_row, baselines[label]))
    return tasks, missing


def load_items(path):
    if path.endswith(".txt.bz2"):
        with bz2.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [
            {"query": lines[i], "gold": int(lines[i + 1].strip()), "choices": lines[i + 2 : i + 6]}
            for i in range(0, len(lines), 6)
        ]
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line.strip()) for line in f]


def main():
    args = parse_args()
    step_dir, run_dir = resolve_checkpoint(args.checkpoint)
    model, meta = load_model(step_dir, args.nanochat)
    from nanochat.core_eval import evaluate_task

    tok_path = os.path.join(run_dir, "tokenizer.json")
    tokenizer = HfTokenizer(tok_path)
    tasks, missing = core_suite(args.eval_data)
    if args.tasks:
        wanted = args.tasks.split(",")
        unknown = [w for w in wanted if w not in [t[0] for t in tasks]]
        if unknown:
            sys.exit(f"unknown or missing task(s): {', '.join(unknown)}")
        tasks = [t for t in tasks if t[0] in wanted]
    theirs = {}
    if args.wgpt_json:
        with open(args.wgpt_json) as f:
            theirs = {t["label"]: t for t in json.load(f)["tasks"]}

    print(f"nanochat {args.nanochat}, checkpoint {step_dir} (step {meta['step']}), tokenizer {tok_path}")
    print(f"{'task':34} {'n':>5} {'acc':>7} {'centred':>8} {'wgpt acc':>9} {'same':>5} {'s':>6}")
    results, differ = [], []
    for label, path, task_meta, baseline in tasks:
        data = load_items(path)
        random.Random(1337).shuffle(data)
        if args.max_per_task > 0:
            data = data[: args.max_per_task]
        t0 = time.time()
        acc = evaluate_task(model, tokenizer, data, "cpu", task_meta)
        centred = (acc - 0.01 * baseline) / (1.0 - 0.01 * baseline)
        mine = theirs.get(label)
        same = "-" if mine is None else ("yes" if round(mine["accuracy"] * len(data)) == round(acc * len(data)) else "NO")
        if same == "NO":
            differ.append(label)
        wacc = "" if mine is None else f"{mine['accuracy']:.4f}"
        print(f"{label:34} {len(data):>5} {acc:>7.4f} {centred:>+8.4f} {wacc:>9} {same:>5} {time.time() - t0:>6.1f}")
        results.append({"label": label, "examples": len(data), "accuracy": acc, "centred": centred})
    core = sum(r["centred"] for r in results) / len(results)
    print(f"CORE (nanochat core_eval, {len(results)} tasks): {core:+.4f}; missing: {', '.join(missing) or 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"core": core, "tasks": results, "missing": missing}, f, indent=1)
    if differ:
        print(f"accuracy differs from wgpt on: {', '.join(differ)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
