#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): a few small valid
inputs and a few invalid ones per target, in each target's input format. Run it again after
changing a format; the files are checked in."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK


def xx_round(acc, lane):
    return (rotl((acc + lane * P2) & MASK, 31) * P1) & MASK


def xxh64(data, seed=0):
    """XXH64, as worker/disk_store.cpp's hash64."""
    n, p = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & MASK, (seed + P2) & MASK, seed, (seed - P1) & MASK]
        while n - p >= 32:
            for i in range(4):
                v[i] = xx_round(v[i], struct.unpack_from("<Q", data, p + 8 * i)[0])
            p += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & MASK
        for x in v:
            h = ((h ^ xx_round(0, x)) * P1 + P4) & MASK
    else:
        h = (seed + P5) & MASK
    h = (h + n) & MASK
    while n - p >= 8:
        h = (rotl(h ^ xx_round(0, struct.unpack_from("<Q", data, p)[0]), 27) * P1 + P4) & MASK
        p += 8
    if n - p >= 4:
        h = (rotl(h ^ ((struct.unpack_from("<I", data, p)[0] * P1) & MASK), 23) * P2 + P3) & MASK
        p += 4
    while p < n:
        h = (rotl(h ^ ((data[p] * P5) & MASK), 11) * P1) & MASK
        p += 1
    h ^= h >> 33
    h = (h * P2) & MASK
    h ^= h >> 29
    h = (h * P3) & MASK
    return h ^ (h >> 32)


assert xxh64(b"abc") == 0x44bc2cf5ad770999 and xxh64(b"a" * 37) == 0xa859ba1fc96ba5a7
assert xxh64(bytes(range(100)), 7) == 0x80653e7e9b887cdd


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors: mode byte 0 + whole file, or mode byte 1 + header text + 0 + data ----

def st_file(header, data):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    two_d = {"__metadata__": {"format": "pt"},
             "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
             "b": {"dtype": "F16", "shape": [2], "data_offsets": [24, 28]},
             "e": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [28, 28]}}
    data = f32 + struct.pack("<2e", 0.5, -1.0)
    write("safetensors", "valid_file", b"\0" + st_file(two_d, data))
    write("safetensors", "valid_split", b"\1" + json.dumps(two_d).encode() + b"\0" + data)
    ints = {"i": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]},
            "u": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}}
    write("safetensors", "valid_ints", b"\1" + json.dumps(ints).encode() + b"\0" + bytes(12))
    nan = {"n": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    write("safetensors", "nan_weight", b"\1" + json.dumps(nan).encode() + b"\0" + struct.pack("<f", float("nan")))
    overlap = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    write("safetensors", "overlap", b"\1" + json.dumps(overlap).encode() + b"\0" + bytes(12))
    past = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    write("safetensors", "past_end", b"\1" + json.dumps(past).encode() + b"\0" + bytes(8))
    odd = {"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [-1], "data_offsets": [8, 8]}}
    write("safetensors", "bad_dtype_shape", b"\1" + json.dumps(odd).encode() + b"\0" + bytes(8))
    empty = {"e": {"dtype": "F32", "shape": [3, 1 << 62, 0], "data_offsets": [0, 0]}}
    write("safetensors", "empty_overflowing_shape", b"\1" + json.dumps(empty).encode() + b"\0")
    write("safetensors", "header_too_long", b"\0" + struct.pack("<Q", 1 << 40) + b"{}")
    write("safetensors", "short_file", b"\0" + b"\x02\0\0")
    write("safetensors", "not_json", b"\1" + b"{\"a\": [1, 2" + b"\0")


# ---- step_protocol: the encoded message (common/protocol.cpp) ----

HEADER = struct.Struct("<IHB")


def vec(fmt, items):
    return struct.pack("<I", len(items)) + b"".join(struct.pack(fmt, *i) for i in items)


def sampling(bias=(), n_logprobs=-1):
    return (struct.pack("<ffiffffQi", 0.7, 0.9, 40, 0.0, 0.1, 0.2, 1.1, 1234, n_logprobs) +
            vec("<if", list(bias)))


def seq(seq_id, n_past, tokens, blocks, sample, bias=(), history=(), banned=()):
    return (struct.pack("<Qi", seq_id, n_past) + vec("<i", [(t,) for t in tokens]) +
            vec("<i", [(b,) for b in blocks]) + struct.pack("<Bii", sample, 2 if sample else -1, -1) +
            sampling(bias, 5 if sample else -1) + vec("<i", [(h,) for h in history]) +
            struct.pack("<i", len(history) // 2) + vec("<i", [(b,) for b in banned]))


def plan(step_id, shutdown, ops, seqs, version=2):
    # CacheOp: kind u8, src i32, dst i32, page_hash u64, n_tokens i32 (32 bytes with padding).
    return (HEADER.pack(0x4b564d50, version, 1) + struct.pack("<QB", step_id, shutdown) +
            vec("<B3xii4xQi4x", ops) + struct.pack("<I", len(seqs)) + b"".join(seqs))


def logprobs(chosen, top):
    return struct.pack("<if", *chosen) + vec("<if", top)


def result(step_id, seqs, failed):
    body = b""
    for seq_id, token, lp, prompt in seqs:
        body += struct.pack("<Qi", seq_id, token) + lp + struct.pack("<I", len(prompt)) + b"".join(prompt)
    return (HEADER.pack(0x4b564d50, 2, 2) + struct.pack("<QI", step_id, len(seqs)) + body +
            vec("<i", [(f,) for f in failed]) + struct.pack("<6f", 0.001, 0, 0.002, 0, 0, 0.01))


def protocol_seeds():
    ops = [(0, 1, 2, 0, 16), (1, 3, 0, 0, 16), (3, 0, 5, 0xabcdef, 7), (4, 5, 1, 0xabcdef, 7)]
    prefill = seq(7, 0, [464, 2068, 7586], [0, 1], 1, bias=[(50256, -100.0), (13, 2.5)],
                  history=[464, 2068, 7586, 11], banned=[50256])
    decode = seq(8, 17, [11], [2, 3], 1)
    chunk = seq(9, 0, list(range(20)), [4], 0)
    write("step_protocol", "plan", plan(42, 0, ops, [prefill, decode, chunk]))
    write("step_protocol", "plan_empty", plan(1, 0, [], []))
    write("step_protocol", "plan_shutdown", plan(2, 1, [], []))
    write("step_protocol", "plan_old_version", plan(3, 0, [], [], version=1))
    write("step_protocol", "plan_bad_op_kind", plan(4, 0, [(9, 0, 0, 0, 0)], []))
    write("step_protocol", "plan_truncated", plan(42, 0, ops, [prefill])[:-3])
    top = [(11, -0.5), (13, -1.5), (198, -2.0)]
    write("step_protocol", "result", result(42, [(7, 11, logprobs((11, -0.5), top), [logprobs((2068, -3.0), top[:1])]),
                                                 (8, 198, logprobs((198, -2.0), []), [])], [2]))
    write("step_protocol", "result_empty", result(0, [], []))
    write("step_protocol", "result_trailing", result(0, [], []) + b"\0")


# ---- tokenizer: mode byte 0 + text, or mode byte 1 + int32 ids ----

def tokenizer_seeds():
    texts = {
        "ascii": b"Hello, world! It's 2024 and we're testing GPT-2's tokenizer.",
        "unicode": "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 \u0645\u0631\u062d\u0628\u0627".encode(),
        "whitespace": b"  leading\t\ttabs\n\n\nnewlines   trailing   ",
        "invalid_utf8": b"ok \xff\xfe \xe2\x82 \xf0\x9f\x98 end\xc3",
        "special": b"<|endoftext|>The end.<|endoftext|>",
        "digits": b"3.14159 1,000,000 0x1F 123abc456",
    }
    for name, text in texts.items():
        write("tokenizer", "text_" + name, b"\0" + text)
    ids = {
        "valid": [15496, 11, 995, 0, 50256, 220],
        "out_of_range": [-1, 50257, 2147483647, -2147483648, 13],
        "bytes": [198, 447, 247, 94, 188],  # pieces of multi-byte characters
    }
    for name, values in ids.items():
        write("tokenizer", "ids_" + name, b"\1" + struct.pack("<%di" % len(values), *values))


# ---- disk_slot: mode byte (bit 0 fixes the header hash, bit 1 picks slot 1) + header + page ----

FINGERPRINT, RANK, TP, PP, PAGE_BYTES = 0x1234abcd5678ef90, 0, 2, 1, 64


def slot_header(slot, page, version=1, fingerprint=FINGERPRINT, n_tokens=16, page_hash=0xfeedface,
                payload_bytes=PAGE_BYTES, reserved=0, magic=0x544f4c53564b4d4b):
    h = struct.pack("<QIIQiiiiQiIQQ", magic, version, 128, fingerprint, RANK, TP, PP, slot, page_hash,
                    n_tokens, reserved, payload_bytes, xxh64(page))
    h += bytes(120 - len(h))
    return h + struct.pack("<Q", xxh64(h))


def disk_slot_seeds():
    page = bytes(range(PAGE_BYTES))
    write("disk_slot", "valid_slot0", b"\0" + slot_header(0, page) + page)
    write("disk_slot", "valid_slot1", b"\2" + slot_header(1, page) + page)
    write("disk_slot", "valid_fixed_hash", b"\1" + slot_header(0, page) + page)
    write("disk_slot", "wrong_slot", b"\2" + slot_header(0, page) + page)
    write("disk_slot", "bad_payload", b"\0" + slot_header(0, page) + bytes(PAGE_BYTES))
    write("disk_slot", "other_model", b"\1" + slot_header(0, page, fingerprint=7) + page)
    write("disk_slot", "bad_version", b"\1" + slot_header(0, page, version=2) + page)
    write("disk_slot", "negative_tokens", b"\1" + slot_header(0, page, n_tokens=-1) + page)
    write("disk_slot", "reserved_set", b"\1" + slot_header(0, page, reserved=1) + page)
    write("disk_slot", "zeros", b"\0" + bytes(128 + PAGE_BYTES))
    torn = bytearray(slot_header(0, page))
    torn[40] ^= 1
    write("disk_slot", "torn_header", b"\0" + bytes(torn) + page)


# ---- api_request: parser byte (0 completions, 1 chat, 2 either, 3 tokenize, 4 detokenize) + body ----

def api_seeds():
    bodies = {
        "completion": (0, {"model": "gpt2", "prompt": "The quick brown fox", "max_tokens": 16,
                           "temperature": 0.7, "top_p": 0.9, "top_k": 40, "stop": ["\n", "."], "seed": 3,
                           "logprobs": 2, "echo": True, "n": 2, "best_of": 3,
                           "logit_bias": {"50256": -100, "13": 2}}),
        "completion_ids": (0, {"prompt": [[464, 2068], [15496]], "max_tokens": None, "min_tokens": 1,
                               "stop_token_ids": [50256], "stream": True,
                               "stream_options": {"include_usage": True}}),
        "completion_beam": (0, {"prompt": ["a", "b"], "use_beam_search": True, "best_of": 4, "n": 2,
                                "length_penalty": 0.5, "early_stopping": "never", "max_tokens": 8}),
        "chat": (1, {"model": "gpt2", "messages": [
                     {"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                     {"role": "assistant", "content": None}],
                     "max_completion_tokens": 32, "logprobs": True, "top_logprobs": 3,
                     "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.2,
                     "cache_salt": "tenant-1", "user": "u"}),
        "chat_tools": (1, {"messages": [{"role": "user", "content": "x"}], "tools": [], "tool_choice": "auto",
                           "response_format": {"type": "json_object"}}),
        "any": (2, {"messages": [{"role": "developer", "content": "y"}], "ignore_eos": True}),
        "tokenize": (3, {"prompt": "Hello world"}),
        "tokenize_chat": (3, {"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": False}),
        "detokenize": (4, {"model": "gpt2", "tokens": [15496, 995]}),
        "bad_range": (0, {"prompt": "x", "temperature": 3, "n": 0, "max_tokens": 5000}),
        "bad_model": (0, {"model": "gpt3", "prompt": "x"}),
        "bad_ids": (4, {"tokens": [-1, 50257, 1.5, "7"]}),
    }
    for name, (parser, body) in bodies.items():
        write("api_request", name, bytes([parser]) + json.dumps(body).encode())
    write("api_request", "not_json", b"\0{\"prompt\": \"x\",")
    write("api_request", "deep", b"\1" + b"[" * 80 + b"]" * 80)
    write("api_request", "not_object", b"\3[1, 2]")


def main():
    safetensors_seeds()
    protocol_seeds()
    tokenizer_seeds()
    disk_slot_seeds()
    api_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
