"""Computes golden logits for the tiny checkpoints with the float64 reference (deepseek_ref.py)
and writes tests/data/tiny/<name>/golden.safetensors.  See README.md for the exact layout.

    /usr/bin/python3 tests/reference/make_goldens.py                 # all checkpoints
    /usr/bin/python3 tests/reference/make_goldens.py v2_tiny         # one
    /usr/bin/python3 tests/reference/make_goldens.py --out /tmp/tiny # checkpoints under /tmp/tiny
    /usr/bin/python3 tests/reference/make_goldens.py --find-seed v2_tiny [--start 3001]
        # in memory: first seed >= start whose checkpoint passes all margin checks

Robustness checks (the script exits non-zero, writing nothing for that checkpoint, if one fails):
  * every MoE routing decision, at every position of the full prompt+decode sequence:
      group selection: (last kept group score) - (best dropped group score)  > ROUTING_MARGIN
      expert top-k:    (k-th best choice score) - ((k+1)-th best, -inf-masked experts excluded)
                       > ROUTING_MARGIN        (choice scores = scores + bias where a bias exists)
  * every argmax (all P prefill_logits rows, including the greedy one at P-1, and all 16
    decode_logits rows): top1 - top2 > ARGMAX_MARGIN
  * the greedy continuation has >= MIN_DISTINCT_DECODE distinct ids (not a trivial loop)
  * the greedy continuation never produces the EOS id (so stop-on-EOS cannot cut it short)
  * for checkpoints with e_score_correction_bias, the bias changes at least one expert choice.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/reference free of __pycache__
sys.path.insert(0, HERE)
import make_checkpoints as mc  # noqa: E402
import safetensors_io as st  # noqa: E402
from deepseek_ref import DeepseekRef, argmax_gap  # noqa: E402

ROUTING_MARGIN = 1e-4
ARGMAX_MARGIN = 1e-3
NUM_DECODE = 16
MIN_DISTINCT_DECODE = 8   # reject seeds whose greedy continuation collapses into a short loop
# Fixed prompt (P = 7), fed exactly as given: it already starts with BOS (id 0); no BOS is added.
PROMPT_IDS = [mc.BOS_ID, 17, 91, 5, 200, 33, 128]


class MarginError(Exception):
    pass


def run_golden(model, prompt=PROMPT_IDS, num_decode=NUM_DECODE):
    """Greedy decode + one final full forward. Returns (tensors dict of numpy arrays, stats dict).
    Raises MarginError when a robustness check fails."""
    cfg = model.cfg
    P = len(prompt)
    ids = list(prompt)
    step_argmax = []
    for _ in range(num_decode):
        nxt = int(torch.argmax(model.forward(ids)[-1]))
        step_argmax.append(nxt)
        ids.append(nxt)
    decode_ids = ids[P:]
    trace = []
    logits = model.forward(ids, trace=trace)          # [P + 16, vocab], position t = after token t
    prefill = logits[:P]
    decode = logits[P:P + num_decode]
    assert decode.shape[0] == num_decode

    problems = []
    # greedy argmax margins and consistency of the one-shot forward with the step-by-step decode
    argmax_gaps = []
    rows = [prefill[P - 1]] + [decode[i] for i in range(num_decode)]
    for i, row in enumerate(rows):
        a, g = argmax_gap(row)
        argmax_gaps.append(g)
        if i < num_decode and a != decode_ids[i]:
            problems.append("argmax mismatch at decode step %d (%d vs %d)" % (i, a, decode_ids[i]))
        if not g > ARGMAX_MARGIN:
            problems.append("argmax gap %.3g at greedy row %d" % (g, i))
    if len(set(decode_ids)) < MIN_DISTINCT_DECODE:
        problems.append("degenerate greedy continuation (%d distinct ids < %d): %s"
                        % (len(set(decode_ids)), MIN_DISTINCT_DECODE, decode_ids))
    if mc.EOS_ID in decode_ids:
        problems.append("greedy continuation contains EOS (%d): %s" % (mc.EOS_ID, decode_ids))
    # every other prompt position too (a test may compare argmax at each prefill position)
    all_prefill_gap = min(argmax_gap(prefill[t])[1] for t in range(P))
    for t in range(P):
        g = argmax_gap(prefill[t])[1]
        if not g > ARGMAX_MARGIN:
            problems.append("argmax gap %.3g at prefill position %d" % (g, t))

    # routing margins
    min_expert_gap = math.inf
    min_group_gap = math.inf
    bias_changed = 0
    decisions = 0
    for rec in trace:
        eg = rec["expert_gap"]
        decisions += eg.numel()
        if float(eg.min()) < min_expert_gap:
            min_expert_gap = float(eg.min())
        bad = (eg <= ROUTING_MARGIN).nonzero().flatten().tolist()
        for t in bad:
            problems.append("layer %d pos %d: expert top-k gap %.3g" % (rec["layer"], t, float(eg[t])))
        if rec["group_gap"] is not None:
            gg = rec["group_gap"]
            min_group_gap = min(min_group_gap, float(gg.min()))
            for t in (gg <= ROUTING_MARGIN).nonzero().flatten().tolist():
                problems.append("layer %d pos %d: group gap %.3g" % (rec["layer"], t, float(gg[t])))
        if rec["unbiased_topk_idx"] is not None:
            a = torch.sort(rec["topk_idx"], dim=-1).values
            b = torch.sort(rec["unbiased_topk_idx"], dim=-1).values
            bias_changed += int((a != b).any(-1).sum())
    has_bias = any(r["unbiased_topk_idx"] is not None for r in trace)
    if has_bias and bias_changed == 0:
        problems.append("e_score_correction_bias never changes a routing decision")
    if problems:
        raise MarginError("; ".join(problems[:8]) + (" (+%d more)" % (len(problems) - 8) if len(problems) > 8 else ""))

    stats = {
        "min_routing_expert_gap": min_expert_gap,
        "min_routing_group_gap": min_group_gap,
        "min_greedy_argmax_gap": min(argmax_gaps),
        "min_prefill_argmax_gap_all_positions": all_prefill_gap,
        "routing_decisions": decisions,
        "bias_changed_decisions": bias_changed if has_bias else None,
        "max_abs_logit": float(logits.abs().max()),
    }
    tensors = {
        "prompt_ids": np.asarray(prompt, dtype=np.int32),
        "prefill_logits": prefill.numpy().astype(np.float32),
        "decode_ids": np.asarray(decode_ids, dtype=np.int32),
        "decode_logits": decode.numpy().astype(np.float32),
    }
    return tensors, stats


def _fmt(stats):
    return ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v) for k, v in stats.items())


def write_golden(name, out_root=mc.OUT_ROOT):
    d = os.path.join(out_root, name)
    model = DeepseekRef.from_pretrained(d)
    tensors, stats = run_golden(model)
    meta = {
        "checkpoint": name,
        "prompt_len": str(len(PROMPT_IDS)),
        "num_decode": str(NUM_DECODE),
        "routing_margin": repr(ROUTING_MARGIN),
        "argmax_margin": repr(ARGMAX_MARGIN),
        "min_routing_expert_gap": repr(stats["min_routing_expert_gap"]),
        "min_routing_group_gap": repr(stats["min_routing_group_gap"]),
        "min_greedy_argmax_gap": repr(stats["min_greedy_argmax_gap"]),
        "decode_logits_definition": "decode_logits[i] = logits at position P+i, i.e. after feeding "
                                    "prompt_ids + decode_ids[0..i]; decode_ids[0] = argmax(prefill_logits[P-1]), "
                                    "decode_ids[i+1] = argmax(decode_logits[i])",
    }
    st.write_safetensors(os.path.join(d, "golden.safetensors"),
                         {k: st.entry_from_numpy(v) for k, v in tensors.items()}, metadata=meta)
    print("%-20s decode_ids=%s" % (name, tensors["decode_ids"].tolist()))
    print("%-20s %s" % ("", _fmt(stats)))
    return stats


def find_seed(name, start, tries):
    for seed in range(start, start + tries):
        cfg, entries = mc.build(name, seed=seed)
        model = DeepseekRef.from_entries(cfg, entries)
        try:
            _, stats = run_golden(model)
        except MarginError as e:
            print("seed %d: FAIL %s" % (seed, e))
            continue
        print("seed %d: OK %s" % (seed, _fmt(stats)))
        return seed
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="checkpoints (default: all in make_checkpoints.CHECKPOINTS)")
    ap.add_argument("--out", metavar="DIR", default=mc.OUT_ROOT,
                    help="root holding the checkpoints (written by make_checkpoints.py --out DIR); "
                         "goldens go to DIR/<name>/golden.safetensors (default: tests/data/tiny)")
    ap.add_argument("--find-seed", metavar="NAME")
    ap.add_argument("--start", type=int, default=None)
    ap.add_argument("--tries", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)   # deterministic float64 reductions
    if args.find_seed:
        start = args.start if args.start is not None else mc.CHECKPOINTS[args.find_seed]["seed"]
        seed = find_seed(args.find_seed, start, args.tries)
        if seed is None:
            sys.exit("no passing seed in [%d, %d)" % (start, start + args.tries))
        return
    failed = []
    for name in args.names or list(mc.CHECKPOINTS):
        try:
            write_golden(name, args.out)
        except MarginError as e:
            print("%s: MARGIN CHECK FAILED: %s" % (name, e), file=sys.stderr)
            failed.append(name)
    if failed:
        sys.exit("margin checks failed for %s; pick a new seed with --find-seed" % ", ".join(failed))


if __name__ == "__main__":
    main()
