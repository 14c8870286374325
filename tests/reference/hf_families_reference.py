#!/usr/bin/python3
"""Reference checkpoints and golden outputs for the OPT and GPT-Neo families.

An independent numpy forward that follows Hugging Face transformers' modeling_opt.py
(OPTForCausalLM, pre-LayerNorm) and modeling_gpt_neo.py (GPTNeoForCausalLM) step by step, in float64
over float32 weights, with no KV cache (every step recomputes the whole sequence). It writes, per
model, tests/data/<name>/{config.json, model.safetensors, golden.json}; golden.json has the format
of tests/data/hf-gpt2-4l32d/golden.json (prompt_logprob_of_next, last_top20, greedy,
greedy_margins, greedy_step_top5).

Regenerate (needs python3-numpy only; the C++ tests read the files and need no Python):
    /usr/bin/python3 tests/reference/hf_families_reference.py tests/data   (Debian python3 + python3-numpy)
The weights come from a seeded generator, so the files are the same on every run.
"""
import json
import os
import struct
import sys

import numpy as np

N_GREEDY = 20


# ---- safetensors, written by hand: 8-byte little-endian header length, JSON header, raw data ----
def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, array in tensors:
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# ---- building blocks, as torch computes them ----
def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased variance, as nn.LayerNorm
    return (x - mean) / np.sqrt(var + eps) * w + b


def linear(x, w, b=None):  # nn.Linear: weight [out, in]
    y = x @ w.T
    return y if b is None else y + b


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def relu(x):
    return np.maximum(x, 0.0)


def attention(q, k, v, n_head, scale, window):
    """q, k, v: [T, E]. Causal; window > 0: key j is visible from query i when i - window < j <= i
    (GPTNeoSelfAttention: bias = tril(ones) ^ tril(ones, -window_size))."""
    t, e = q.shape
    d = e // n_head
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    visible = j <= i
    if window > 0:
        visible &= j > i - window
    out = np.zeros_like(q)
    for h in range(n_head):
        sl = slice(h * d, (h + 1) * d)
        s = (q[:, sl] * scale) @ k[:, sl].T
        s = np.where(visible, s, -np.inf)
        s = s - s.max(-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        out[:, sl] = p @ v[:, sl]
    return out


# ---- OPT (modeling_opt.py, do_layer_norm_before=True) ----
def opt_forward(w, cfg, ids):
    f = lambda name: w["model.decoder." + name].astype(np.float64)
    e, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    scaling = (e // n_head) ** -0.5
    positions = np.arange(len(ids)) + 2  # OPTLearnedPositionalEmbedding: cumsum(mask) - 1 + offset 2
    x = f("embed_tokens.weight")[ids] + f("embed_positions.weight")[positions]
    for l in range(cfg["num_hidden_layers"]):
        p = lambda name: f("layers.%d.%s" % (l, name))
        residual = x
        h = layer_norm(x, p("self_attn_layer_norm.weight"), p("self_attn_layer_norm.bias"), 1e-5)
        q = linear(h, p("self_attn.q_proj.weight"), p("self_attn.q_proj.bias")) * scaling
        k = linear(h, p("self_attn.k_proj.weight"), p("self_attn.k_proj.bias"))
        v = linear(h, p("self_attn.v_proj.weight"), p("self_attn.v_proj.bias"))
        a = attention(q, k, v, n_head, 1.0, 0)
        x = residual + linear(a, p("self_attn.out_proj.weight"), p("self_attn.out_proj.bias"))
        residual = x
        h = layer_norm(x, p("final_layer_norm.weight"), p("final_layer_norm.bias"), 1e-5)
        h = linear(relu(linear(h, p("fc1.weight"), p("fc1.bias"))), p("fc2.weight"), p("fc2.bias"))
        x = residual + h
    x = layer_norm(x, f("final_layer_norm.weight"), f("final_layer_norm.bias"), 1e-5)
    if cfg.get("tie_word_embeddings", True):
        return x @ f("embed_tokens.weight").T  # lm_head tied to embed_tokens
    return x @ w["lm_head.weight"].astype(np.float64).T


# ---- GPT-Neo (modeling_gpt_neo.py) ----
def attention_layers(cfg):
    layers = []
    for pattern, repeats in cfg["attention_types"]:
        layers += pattern * repeats
    return layers


def gpt_neo_forward(w, cfg, ids):
    f = lambda name: w["transformer." + name].astype(np.float64)
    eps, n_head = cfg["layer_norm_epsilon"], cfg["num_heads"]
    x = f("wte.weight")[ids] + f("wpe.weight")[np.arange(len(ids))]
    for l, kind in enumerate(attention_layers(cfg)):
        p = lambda name: f("h.%d.%s" % (l, name))
        window = cfg["window_size"] if kind == "local" else 0
        residual = x
        h = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        q = linear(h, p("attn.attention.q_proj.weight"))
        k = linear(h, p("attn.attention.k_proj.weight"))
        v = linear(h, p("attn.attention.v_proj.weight"))
        a = attention(q, k, v, n_head, 1.0, window)  # GPT-Neo does not scale the scores
        x = residual + linear(a, p("attn.attention.out_proj.weight"), p("attn.attention.out_proj.bias"))
        residual = x
        h = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        x = residual + linear(gelu_new(linear(h, p("mlp.c_fc.weight"), p("mlp.c_fc.bias"))),
                              p("mlp.c_proj.weight"), p("mlp.c_proj.bias"))
    x = layer_norm(x, f("ln_f.weight"), f("ln_f.bias"), eps)
    return x @ f("wte.weight").T


# ---- random weights ----
def random_weights(rng, shapes):
    out = []
    for name, shape in shapes:
        is_norm = "layer_norm" in name or "ln_" in name
        if is_norm and name.endswith(".weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            a = 0.05 * rng.standard_normal(shape)
        elif "embed" in name or name.endswith("wte.weight") or name.endswith("wpe.weight") or name == "lm_head.weight":
            a = 0.3 * rng.standard_normal(shape)
        else:
            a = 0.15 * rng.standard_normal(shape)
        out.append((name, a.astype(np.float32)))
    return out


def opt_shapes(cfg):
    e, i = cfg["hidden_size"], cfg["ffn_dim"]
    s = [("model.decoder.embed_tokens.weight", (cfg["vocab_size"], e)),
         ("model.decoder.embed_positions.weight", (cfg["max_position_embeddings"] + 2, e))]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.decoder.layers.%d." % l
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s += [(p + "self_attn.%s.weight" % proj, (e, e)), (p + "self_attn.%s.bias" % proj, (e,))]
        s += [(p + "self_attn_layer_norm.weight", (e,)), (p + "self_attn_layer_norm.bias", (e,)),
              (p + "fc1.weight", (i, e)), (p + "fc1.bias", (i,)), (p + "fc2.weight", (e, i)), (p + "fc2.bias", (e,)),
              (p + "final_layer_norm.weight", (e,)), (p + "final_layer_norm.bias", (e,))]
    s += [("model.decoder.final_layer_norm.weight", (e,)), ("model.decoder.final_layer_norm.bias", (e,))]
    if not cfg.get("tie_word_embeddings", True):
        s.append(("lm_head.weight", (cfg["vocab_size"], e)))
    return s


def gpt_neo_shapes(cfg):
    e = cfg["hidden_size"]
    i = cfg["intermediate_size"] or 4 * e
    s = [("transformer.wte.weight", (cfg["vocab_size"], e)), ("transformer.wpe.weight", (cfg["max_position_embeddings"], e))]
    for l in range(cfg["num_layers"]):
        p = "transformer.h.%d." % l
        s += [(p + "ln_1.weight", (e,)), (p + "ln_1.bias", (e,))]
        s += [(p + "attn.attention.%s.weight" % proj, (e, e)) for proj in ("k_proj", "v_proj", "q_proj", "out_proj")]
        s += [(p + "attn.attention.out_proj.bias", (e,)), (p + "ln_2.weight", (e,)), (p + "ln_2.bias", (e,)),
              (p + "mlp.c_fc.weight", (i, e)), (p + "mlp.c_fc.bias", (i,)),
              (p + "mlp.c_proj.weight", (e, i)), (p + "mlp.c_proj.bias", (e,))]
    return s + [("transformer.ln_f.weight", (e,)), ("transformer.ln_f.bias", (e,))]


OPT_CONFIG = {
    "_name_or_path": "hf-opt-3l32d", "_remove_final_layer_norm": False, "activation_dropout": 0.0,
    "activation_function": "relu", "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0,
    "bos_token_id": 2, "do_layer_norm_before": True, "dropout": 0.1, "enable_bias": True, "eos_token_id": 2,
    "ffn_dim": 128, "hidden_size": 32, "init_std": 0.02, "layer_norm_elementwise_affine": True, "layerdrop": 0.0,
    "max_position_embeddings": 64, "model_type": "opt", "num_attention_heads": 4, "num_hidden_layers": 3,
    "pad_token_id": 1, "prefix": "</s>", "torch_dtype": "float32", "use_cache": True, "vocab_size": 4096,
    "word_embed_proj_dim": 32,
}

# An OPT whose head is its own matrix (tie_word_embeddings false), with a small vocabulary.
OPT_UNTIED_CONFIG = dict(OPT_CONFIG, _name_or_path="hf-opt-untied-2l32d", num_hidden_layers=2, vocab_size=512,
                         tie_word_embeddings=False)

GPT_NEO_CONFIG = {
    "_name_or_path": "hf-gptneo-4l32d", "activation_function": "gelu_new", "architectures": ["GPTNeoForCausalLM"],
    "attention_dropout": 0, "attention_layers": ["global", "local", "global", "local"],
    "attention_types": [[["global", "local"], 2]], "bos_token_id": 4095, "embed_dropout": 0, "eos_token_id": 4095,
    "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": None, "layer_norm_epsilon": 1e-05,
    "max_position_embeddings": 128, "model_type": "gpt_neo", "num_heads": 4, "num_layers": 4, "resid_dropout": 0,
    "torch_dtype": "float32", "use_cache": True, "vocab_size": 4096, "window_size": 7,
}


def log_softmax(logits):
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def top(lp, k):
    ids = sorted(range(len(lp)), key=lambda t: (-lp[t], t))[:k]
    return {"ids": ids, "logprobs": [float(lp[t]) for t in ids]}


def golden_case(forward, prompt):
    lp = log_softmax(forward(np.array(prompt)))
    case = {"prompt": prompt,
            "prompt_logprob_of_next": [float(lp[i, prompt[i + 1]]) for i in range(len(prompt) - 1)],
            "last_top20": top(lp[-1], 20)}
    seq, greedy, margins, steps = list(prompt), [], [], []
    for _ in range(N_GREEDY):
        last = log_softmax(forward(np.array(seq)))[-1]
        best = top(last, 5)
        greedy.append(best["ids"][0])
        margins.append(best["logprobs"][0] - best["logprobs"][1])
        steps.append(best)
        seq.append(best["ids"][0])
    case.update({"greedy": greedy, "greedy_margins": margins, "greedy_step_top5": steps})
    return case


def write_model(out_dir, name, cfg, shapes, forward, prompts, seed):
    rng = np.random.default_rng(seed)
    tensors = random_weights(rng, shapes)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    w = dict(tensors)
    golden = {"config": cfg, "cases": [golden_case(lambda ids: forward(w, cfg, ids), p) for p in prompts]}
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(golden, f)


def prompts(rng, bos, lengths):
    out = []
    for n in lengths:
        p = [int(t) for t in rng.integers(3, 4000, size=n)]
        out.append(([bos] if bos is not None else []) + p)
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data")
    rng = np.random.default_rng(7)
    # OPT prompts start with </s> (bos_token_id 2), as its tokenizer puts it before every prompt.
    write_model(out_dir, "hf-opt-3l32d", OPT_CONFIG, opt_shapes(OPT_CONFIG), opt_forward,
                prompts(rng, 2, [1, 6, 17, 30]), seed=1234)
    # Prompts shorter than, about and well past the window (7) and a 16-token page.
    write_model(out_dir, "hf-gptneo-4l32d", GPT_NEO_CONFIG, gpt_neo_shapes(GPT_NEO_CONFIG), gpt_neo_forward,
                prompts(rng, None, [1, 5, 8, 19, 37]), seed=4321)
    write_model(out_dir, "hf-opt-untied-2l32d", OPT_UNTIED_CONFIG, opt_shapes(OPT_UNTIED_CONFIG), opt_forward,
                [[2] + [int(t) for t in rng.integers(3, 500, size=n)] for n in (4, 13)], seed=99)


if __name__ == "__main__":
    main()
