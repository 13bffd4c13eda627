#!/usr/bin/python3
"""Trains moeserve's bundled tiny DeepSeek-V3-architecture model and writes it to models/tiny.

    scripts/install_deps.sh --with-training   # python3-torch, -numpy, -regex, python3.11-doc
    /usr/bin/python3 training/tiny/train.py                   # ~20 min on a 2-core machine
    /usr/bin/python3 training/tiny/train.py --steps 20 --out /tmp/t   # a smoke run (its greedy
                                                                      # text is too poor for a golden)
    /usr/bin/python3 training/tiny/train.py --check-only              # re-check models/tiny

Steps: (1) read the corpus (corpus.py: the Python 3.11 documentation from python3.11-doc, split
into training and held-out files); (2) train a byte-level BPE tokenizer on the training text
(tests/reference/make_tokenizer.py: DeepSeek-V3's pre-tokenizer and special tokens, DeepSeek-R1's
chat template); (3) build the token stream: every training file as `BOS text EOS`, plus one chat
sample per documentation section, `BOS <｜User｜>question<｜Assistant｜><think>\\n...\\n</think>\\n\\n
answer EOS`, rendered exactly as the chat template renders a generation prompt; (4) train
(model.py) with AdamW, next-token loss + 0.3 x the MTP loss + the sequence-wise balance loss,
updating the routing biases after every step; (5) export config.json, generation_config.json and
model.safetensors (BF16) in the Hugging Face DeepSeek-V3 layout; (6) check that the float64
reference (tests/reference/deepseek_ref.py) loading the exported files reproduces the trained
model's logits, measure held-out perplexity against a unigram baseline, and write
`training_report.json` and the golden logits for the C++ test.

Everything is seeded; the run is deterministic for a given --seed and --threads.
"""

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import bpe  # noqa: E402
import corpus  # noqa: E402
import make_goldens  # noqa: E402
import make_tokenizer  # noqa: E402
import safetensors_io as st  # noqa: E402
from deepseek_ref import DeepseekRef  # noqa: E402
from model import TinyDeepseekV3  # noqa: E402

VOCAB_SIZE = 4096
SEQ_LEN = 256
DEFAULT_OUT = os.path.join(ROOT, "models", "tiny")
DEFAULT_GOLDEN = os.path.join(ROOT, "tests", "data", "models_tiny_golden.safetensors")

CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.0001,
    "seq_aux": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 192,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "kv_lora_rank": 64,
    "q_lora_rank": 96,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "v_head_dim": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "moe_intermediate_size": 96,
    "moe_layer_freq": 1,
    "n_group": 4,
    "topk_group": 2,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "norm_topk_prob": True,
    "num_hidden_layers": 4,
    "num_nextn_predict_layers": 1,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": SEQ_LEN,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "tie_word_embeddings": False,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3",
    "use_cache": True,
    "vocab_size": VOCAB_SIZE,
}

GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "do_sample": True,
    "temperature": 0.6,
    "top_p": 0.95,
}

QUESTIONS = ["Tell me about {}.", "What is {}?", "Explain {}.", "{}", "Can you describe {}?",
             "I have a question about {}.", "What should I know about {}?"]


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def paragraphs(files):
    return [p for _, secs in files for h, ps in secs for p in ([h] if h else []) + ps]


def first_sentences(text, limit):
    """A prefix of text of at most ~limit characters ending at a sentence end when there is one."""
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[:cut + 1] if cut > limit // 3 else text[:limit].rsplit(" ", 1)[0] + "..."


def chat_samples(files, tok, rng):
    """One chat exchange per section: its heading as the question, its first paragraph (or two)
    as the answer, an empty-ish reasoning block naming the topic."""
    bos, eos = tok.token_id(make_tokenizer.BOS), tok.token_id(make_tokenizer.EOS)
    user, assistant = tok.token_id("<｜User｜>"), tok.token_id("<｜Assistant｜>")
    think, end_think = tok.token_id("<think>"), tok.token_id("</think>")
    out = []
    for _, secs in files:
        for heading, paras in secs:
            if len(heading) < 4 or len(paras[0]) < 40:
                continue
            topic = heading.rstrip(".:?")
            question = rng.choice(QUESTIONS).format(topic)
            answer = first_sentences(" ".join(paras[:2]), 600)
            ids = ([bos, user] + tok.encode(question) + [assistant, think]
                   + tok.encode("\nThe question is about " + topic + ".\n") + [end_think]
                   + tok.encode("\n\n" + answer) + [eos])
            out.append(ids)
    return out


def build_stream(files, tok, with_chat, seed):
    """(token stream, documents in it, chat samples among them, tokens of documentation text)."""
    bos, eos = tok.token_id(make_tokenizer.BOS), tok.token_id(make_tokenizer.EOS)
    docs = [[bos] + tok.encode(corpus.document_text(secs)) + [eos] for _, secs in files]
    doc_tokens = sum(len(d) - 2 for d in docs)
    n_chat = 0
    if with_chat:
        chats = chat_samples(files, tok, random.Random(seed))
        n_chat = len(chats)
        docs += chats
    random.Random(seed + 1).shuffle(docs)
    stream = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    return stream, len(docs), n_chat, doc_tokens


def chunks(stream, seq_len):
    n = (len(stream) - 1) // seq_len
    return [torch.from_numpy(stream[i * seq_len:i * seq_len + seq_len + 1].copy())
            for i in range(n)]


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def losses(model, x, mtp_rows, alpha=0.0, reduction="mean"):
    """Cross-entropies of a batch of sequences x [b, t+1]: the main model's next-token loss over
    all rows, and the MTP module's token-after-next loss over the first mtp_rows rows."""
    logits, h = model(x[:, :-1], alpha)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                           reduction=reduction)
    ml = model.mtp_forward(h[:mtp_rows, :-1], x[:mtp_rows, 1:-1], alpha)
    mtp_loss = F.cross_entropy(ml.reshape(-1, ml.shape[-1]), x[:mtp_rows, 2:].reshape(-1),
                               reduction=reduction)
    return loss, mtp_loss


def evaluate(model, data, batch):
    """Mean next-token NLL (nats) over all target positions, and the MTP module's mean NLL."""
    model.eval()
    nll = mtp_nll = 0.0
    n = n_mtp = 0
    with torch.no_grad():
        for i in range(0, len(data), batch):
            x = torch.stack(data[i:i + batch])
            loss, mtp_loss = losses(model, x, len(x), reduction="sum")
            nll += loss.item()
            mtp_nll += mtp_loss.item()
            n += x[:, 1:].numel()
            n_mtp += x[:, 2:].numel()
    model.train()
    return nll / n, mtp_nll / n_mtp


def unigram_nll(train_stream, data, vocab):
    counts = np.bincount(train_stream[1:], minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    targets = torch.stack(data)[:, 1:].numpy().reshape(-1)
    return float(-logp[targets].mean())


def export(model, out):
    tensors = {name: st.entry_from_torch(t, "BF16") for name, t in model.hf_state_dict().items()}
    st.write_safetensors(os.path.join(out, "model.safetensors"), tensors,
                         metadata={"format": "pt"})
    for name, obj in [("config.json", CONFIG), ("generation_config.json", GENERATION_CONFIG)]:
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")


def round_to_bf16_(model):
    """Rounds every parameter and routing bias to BF16 in place (what the export stores)."""
    with torch.no_grad():
        for t in list(model.parameters()) + [m.gate.e_score_correction_bias
                                             for m in model.moe_layers()]:
            t.copy_(torch.from_numpy(st.bf16_decode(st.bf16_encode(t.numpy()))))


def check_against_reference(model, out, sample):
    """Max per-row relative difference (max|diff| / max|ref|) between this model (float32) and
    the float64 reference loading the exported checkpoint, for the main logits and the MTP
    module's. Returns (main, mtp, reference)."""
    ref = DeepseekRef.from_pretrained(out)
    ids = sample.tolist()
    model.eval()
    with torch.no_grad():
        logits, h = model(sample[None])
        mtp = model.mtp_forward(h[:, :-1], sample[None, 1:])

    def rel(got, want):
        return ((got.double() - want).abs().max(-1).values / want.abs().max(-1).values).max().item()

    return rel(logits[0], ref.forward(ids)), rel(mtp[0], ref.mtp_forward(ids)), ref


def load_checkpoint(out):
    """The exported checkpoint as a TinyDeepseekV3 (float32 holding the BF16 values)."""
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    model = TinyDeepseekV3(cfg)
    entries = st.read_safetensors(os.path.join(out, "model.safetensors"))
    model.load_hf_state_dict({k: st.entry_to_torch(e, torch.float32) for k, e in entries.items()})
    return model


# Prompts for the golden logits, tried in order (the text is not from the held-out files, so the
# golden also exercises prompts the model never saw verbatim).
GOLDEN_PROMPTS = [
    "The os module provides a portable way of",
    "A list comprehension is",
    "To open a file for reading, use",
    "Exceptions are raised when",
    "The dictionary maps keys to",
    "In Python, a generator is a function that",
    "This module implements",
    "The following example shows how to",
]


def write_golden(ref, out_path, tok):
    """Golden logits for tests/golden: the first of GOLDEN_PROMPTS whose greedy continuation passes
    make_goldens' margin checks (routing gaps, argmax gaps, no EOS, not a short loop). The prompt
    ids are BOS + this encoder's ids of the text, which the C++ test also checks against the
    serving tokenizer."""
    errors = []
    for text in GOLDEN_PROMPTS:
        prompt = [tok.token_id(make_tokenizer.BOS)] + tok.encode(text)
        try:
            tensors, stats = make_goldens.run_golden(ref, prompt)
        except make_goldens.MarginError as e:
            errors.append("%r: %s" % (text, str(e)[:160]))
            continue
        meta = {"checkpoint": "models/tiny", "prompt_text": text,
                "min_routing_expert_gap": repr(stats["min_routing_expert_gap"]),
                "min_routing_group_gap": repr(stats["min_routing_group_gap"]),
                "min_greedy_argmax_gap": repr(stats["min_greedy_argmax_gap"])}
        st.write_safetensors(out_path, {k: st.entry_from_numpy(v) for k, v in tensors.items()},
                             metadata=meta)
        return text, tensors["decode_ids"].tolist()
    raise SystemExit("no golden prompt passed the margin checks:\n" + "\n".join(errors))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--golden", help="where to write the golden logits (default: "
                    "tests/data/models_tiny_golden.safetensors for the default --out, else "
                    "OUT/golden.safetensors)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--mtp-weight", type=float, default=0.3)
    ap.add_argument("--bias-update-speed", type=float, default=1e-2)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 is faster than 2 on the 2-core machine it was made on")
    ap.add_argument("--corpus-root", default=corpus.DEFAULT_ROOT)
    ap.add_argument("--check-only", action="store_true",
                    help="no training: check the checkpoint already in --out against the reference "
                         "and rewrite --golden")
    args = ap.parse_args()
    if args.golden is None:
        same = os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT)
        args.golden = DEFAULT_GOLDEN if same else os.path.join(args.out, "golden.safetensors")

    t_start = time.time()
    torch.set_num_threads(args.threads)
    if args.check_only:
        tok = bpe.Tokenizer(os.path.join(args.out, "tokenizer.json"))
        sample = torch.tensor([0] + tok.encode(GOLDEN_PROMPTS[0] + " files and directories."))
        rel, rel_mtp, ref = check_against_reference(load_checkpoint(args.out), args.out, sample)
        log("reference vs checkpoint: max relative logit difference %.3g (MTP module %.3g)"
            % (rel, rel_mtp))
        if max(rel, rel_mtp) > 1e-4:
            raise SystemExit("the float64 reference disagrees with the checkpoint")
        text, decode_ids = write_golden(ref, args.golden, tok)
        log("golden: prompt %r -> %r" % (text, tok.decode(decode_ids)))
        return
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    train_files, held_files = corpus.load(args.corpus_root)
    log("corpus: %d training files, %d held-out files" % (len(train_files), len(held_files)))
    with open(os.path.join(ROOT, "tests", "data", "chat_templates", "deepseek_r1.jinja")) as f:
        template = f.read()
    tj, tc = make_tokenizer.build(VOCAB_SIZE, paragraphs(train_files), template,
                                  CONFIG["max_position_embeddings"])
    for name, obj in [("tokenizer.json", tj), ("tokenizer_config.json", tc)]:
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")
    with open(os.path.join(args.out, "LICENSE-PSF.txt"), "w", encoding="utf-8") as f:
        f.write(corpus.psf_license(args.corpus_root))
    tok = bpe.Tokenizer(os.path.join(args.out, "tokenizer.json"))
    log("tokenizer: %d ids" % VOCAB_SIZE)

    train_stream, n_docs, n_chat, doc_tokens = build_stream(train_files, tok, True, args.seed)
    held_stream = build_stream(held_files, tok, False, args.seed)[0]
    train_data, held_data = chunks(train_stream, SEQ_LEN), chunks(held_stream, SEQ_LEN)
    train_chars = sum(len(corpus.document_text(s)) for _, s in train_files)
    log("training stream: %d tokens (%d documents, %d of them chat samples; %.2f chars/token "
        "on the documentation), %d sequences of %d; held out: %d tokens, %d sequences"
        % (len(train_stream), n_docs, n_chat, train_chars / doc_tokens, len(train_data),
           SEQ_LEN, len(held_stream), len(held_data)))

    model = TinyDeepseekV3(CONFIG)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train_data), generator=gen).tolist()
    log("model: %d parameters; %d steps of %d x %d tokens (%.2f epochs)"
        % (n_params, args.steps, args.batch, SEQ_LEN, args.steps * args.batch / len(train_data)))

    history = []
    pos = 0
    t0 = time.time()
    for step in range(args.steps):
        idx = []
        for _ in range(args.batch):
            if pos == len(order):
                order = torch.randperm(len(train_data), generator=gen).tolist()
                pos = 0
            idx.append(order[pos])
            pos += 1
        x = torch.stack([train_data[i] for i in idx])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        # The MTP module trains on the first half of the batch (its head is most of its cost).
        loss, mtp_loss = losses(model, x, args.batch // 2, CONFIG["aux_loss_alpha"])
        balance = sum(m.balance_loss for m in model.moe_layers())
        total = loss + args.mtp_weight * mtp_loss + balance
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.update_balance_bias(args.bias_update_speed)
        if step % 50 == 0 or step == args.steps - 1:
            loads = torch.stack([m.load for m in model.moe_layers()])
            imbalance = (loads.max(-1).values / loads.mean(-1)).max().item()
            rate = (step + 1) * args.batch * SEQ_LEN / (time.time() - t0)
            log("step %5d  loss %.3f  mtp %.3f  balance %.5f  max load/mean %.2f  %.0f tok/s"
                % (step, loss.item(), mtp_loss.item(), float(balance), imbalance, rate))
            history.append({"step": step, "loss": round(loss.item(), 4),
                            "mtp_loss": round(mtp_loss.item(), 4),
                            "max_load_over_mean": round(imbalance, 3)})
    train_seconds = time.time() - t0

    round_to_bf16_(model)
    export(model, args.out)
    held_nll, held_mtp_nll = evaluate(model, held_data, 32)
    uni = unigram_nll(train_stream, held_data, VOCAB_SIZE)
    rel, rel_mtp, ref = check_against_reference(model, args.out, held_data[0][:64])
    log("held-out perplexity %.2f (MTP module, token i+2: %.2f); unigram baseline %.2f; "
        "reference vs trained model max relative logit difference %.3g (MTP module %.3g)"
        % (math.exp(held_nll), math.exp(held_mtp_nll), math.exp(uni), rel, rel_mtp))
    if max(rel, rel_mtp) > 1e-4:
        raise SystemExit("the float64 reference disagrees with the trained model: %.3g" % rel)
    text, decode_ids = write_golden(ref, args.golden, tok)
    log("golden: prompt %r -> %r" % (text, tok.decode(decode_ids)))

    files = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
             "tokenizer_config.json"]
    report = {
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "seq_len": SEQ_LEN,
        "peak_lr": args.lr, "warmup": args.warmup, "mtp_weight": args.mtp_weight,
        "bias_update_speed": args.bias_update_speed, "threads": args.threads,
        "parameters": n_params, "train_tokens_seen": args.steps * args.batch * SEQ_LEN,
        "train_stream_tokens": int(len(train_stream)), "chat_samples": n_chat,
        "held_out_tokens": int(len(held_data) * SEQ_LEN),
        "held_out_perplexity": round(math.exp(held_nll), 3),
        "held_out_mtp_perplexity": round(math.exp(held_mtp_nll), 3),
        "unigram_perplexity": round(math.exp(uni), 3),
        "reference_max_rel_diff": float("%.3g" % rel),
        "reference_mtp_max_rel_diff": float("%.3g" % rel_mtp),
        "train_seconds": round(train_seconds), "total_seconds": round(time.time() - t_start),
        "torch": torch.__version__,
        "sha256": {f: hashlib.sha256(open(os.path.join(args.out, f), "rb").read()).hexdigest()
                   for f in files},
        "history": history,
    }
    with open(os.path.join(args.out, "training_report.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    log("done in %.0f s; wrote %s" % (time.time() - t_start, args.out))


if __name__ == "__main__":
    main()
