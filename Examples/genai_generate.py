#!/usr/bin/env python3
"""Greedy generation with slow tokens through onnxruntime-genai, on a folder `slowfast rewrite`
wrote from an onnxruntime-genai export (it holds genai_config.json and the tokenizer files).

    slowfast rewrite genai/model.onnx -o out/model.onnx --every 8 --slow-kv inputs
    python Examples/genai_generate.py out --prompt-ids 3,17,42 --random-slow 10 --max-new-tokens 8

Slow tokens [1, N, hidden] come from --slow-tokens FILE.npy (e.g. the `slow_tokens` output of
`slowfast tokens`) or --random-slow N (a seeded stand-in). Every slow-fast input is set once per
generation with `generator.set_model_input`:

  * --slow-kv inputs folders (a `*.slow-kv-encoder.onnx` beside the model): the companion model
    runs once in onnxruntime and its outputs `present.{i}.encoder.key/value` are set as the
    decoder's `past_key_values.{i}.encoder.key/value`;
  * --slow-kv inline folders: `slow_tokens` itself is set (the decoder recomputes K/V each step);
  * `slow_tokens_mask` [1, N]: ones, with --slow-mask-from K (tokens K... are padding);
  * `slow_query_exclude` [1, R, 2]: --exclude START:END ranges of positions (the fast visual
    tokens) that do not query the slow tokens; none given: one empty range [0, 0].

--prompt TEXT needs the tokenizer files in the folder; --prompt-ids takes token ids. --cpu runs a
folder built for a GPU (genai -e cuda, e.g. float16) on the CPU provider.
--save-logits FILE.npz writes the tokens and each step's last-position logits.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import onnxruntime_genai as og


def float_type(model_path, input_name):
    """The element type (a NumPy dtype) a model takes for `input_name`: a float16 export takes
    its slow tokens and mask in float16."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    kind = next(i.type for i in session.get_inputs() if i.name == input_name)
    return {"tensor(float16)": np.float16, "tensor(bfloat16)": np.float32}.get(kind, np.float32)


def slow_inputs(folder, slow, mask_from=None, exclude=()):
    """The slow-fast inputs of the decoder in `folder`, name -> array, for slow tokens `slow`
    (converted to the type the models take)."""
    inputs = {}
    companions = sorted(Path(folder).glob("*.slow-kv-encoder.onnx"))
    decoder = json.loads((Path(folder) / "genai_config.json").read_text())["model"]["decoder"]["filename"]
    model = companions[0] if companions else Path(folder) / decoder
    slow = slow.astype(float_type(model, "slow_tokens"))
    if companions:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(companions[0]), options)
        names = [o.name for o in session.get_outputs()]
        for name, value in zip(names, session.run(names, {"slow_tokens": slow})):
            inputs[name.replace("present.", "past_key_values.", 1)] = value
    else:
        inputs["slow_tokens"] = slow
    mask = np.ones(slow.shape[:2], slow.dtype)
    if mask_from is not None:
        mask[:, mask_from:] = 0
    inputs["slow_tokens_mask"] = mask
    ranges = list(exclude) or [(0, 0)]
    inputs["slow_query_exclude"] = np.array([ranges], np.int64)
    return inputs


def generate(folder, prompt_ids, slow, max_new_tokens, mask_from=None, exclude=(), cpu=False):
    """Greedy generation; returns (all tokens, [logits of the last position at each step])."""
    config = og.Config(str(folder))
    if cpu:
        # A folder built for a GPU (genai -e cuda) names that provider; run it on the CPU.
        config.clear_providers()
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + max_new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    # set_model_input does not copy: the arrays must outlive the generator.
    inputs = {name: np.ascontiguousarray(value) for name, value in slow_inputs(folder, slow, mask_from, exclude).items()}
    for name, value in inputs.items():
        generator.set_model_input(name, value)
    generator.append_tokens(np.array([prompt_ids], np.int32))
    logits = []
    while not generator.is_done():
        logits.append(np.array(generator.get_logits())[0, -1].copy())
        generator.generate_next_token()
    return [int(t) for t in generator.get_sequence(0)], logits


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the rewritten onnxruntime-genai model folder")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="text (needs the tokenizer files in the folder)")
    prompt.add_argument("--prompt-ids", help="token ids, comma-separated")
    slow = parser.add_mutually_exclusive_group(required=True)
    slow.add_argument("--slow-tokens", help=".npy file with the slow tokens [1, N, hidden]")
    slow.add_argument("--random-slow", type=int, metavar="N", help="N seeded random slow tokens")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--slow-mask-from", type=int, metavar="K", help="slow tokens K... are padding")
    parser.add_argument("--exclude", action="append", default=[], metavar="START:END",
                        help="positions START...END-1 do not query the slow tokens (repeatable)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--save-logits", help="write tokens and each step's logits to this .npz")
    parser.add_argument("--cpu", action="store_true",
                        help="run on the CPU even where genai_config.json names a GPU provider (a -e cuda export)")
    args = parser.parse_args()

    folder = Path(args.folder)
    if args.prompt is not None:
        tokenizer = og.Tokenizer(og.Model(str(folder)))
        prompt_ids = [int(t) for t in tokenizer.encode(args.prompt)]
    else:
        prompt_ids = [int(t) for t in args.prompt_ids.split(",")]
    hidden = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["hidden_size"]
    if args.slow_tokens:
        slow = np.load(args.slow_tokens)
    else:
        slow = np.random.default_rng(args.seed).standard_normal((1, args.random_slow, hidden)).astype(np.float32)
    if slow.ndim != 3 or slow.shape[0] != 1 or slow.shape[2] != hidden:
        sys.exit(f"error: {args.slow_tokens or 'slow tokens'}: expected shape [1, N, {hidden}], got {list(slow.shape)}")
    exclude = []
    for text in args.exclude:
        start, _, end = text.partition(":")
        if not (start.isdigit() and end.isdigit()):
            sys.exit(f"error: --exclude {text}: expected START:END, two non-negative integers")
        exclude.append((int(start), int(end)))

    tokens, logits = generate(folder, prompt_ids, slow, args.max_new_tokens, args.slow_mask_from, exclude, args.cpu)
    print("prompt:", prompt_ids)
    print("generated:", tokens[len(prompt_ids):])
    if args.prompt is not None:
        print(og.Tokenizer(og.Model(str(folder))).decode(np.array(tokens[len(prompt_ids):], np.int32)))
    if args.save_logits:
        np.savez(args.save_logits, tokens=np.array(tokens, np.int64), logits=np.stack(logits))


if __name__ == "__main__":
    main()
