"""Sample from a trained model or from GPT-2.

    python sample.py --out_dir=out-char --start="ROMEO:"
    python sample.py --init_from=gpt2 --start="FILE:prompt.txt" --num_samples=3

All samples are generated together as one batch: the prompt goes through the model once
(into a key-value cache), then a compiled loop adds one token per step.
"""
import os
import sys
import time

# ----------------------------------------------------------------------------- settings
init_from = 'resume'  # 'resume' (out_dir/ckpt.pkl) or 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'
out_dir = 'out'  # ignored unless init_from == 'resume'
start = '\n'  # or '<|endoftext|>' or 'FILE:prompt.txt' to read the prompt from a file
num_samples = 10
max_new_tokens = 500
temperature = 0.8  # < 1 sharper, > 1 more random; must be > 0
top_k = 200  # keep only the top_k most likely tokens (>= vocab size: no limit)
top_p = 1.0  # nucleus sampling: keep the most likely tokens up to this probability mass (1.0: off)
keep = 0.75  # past block_size the context moves on to this fraction of it (1.0: as nanoGPT)
seed = 1337
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': model.default_dtype()
# -----------------------------------------------------------------------------
import configurator  # noqa: E402

configurator.configure(globals(), quiet=True)  # stdout carries only the samples

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

# Compiling the sampling loop takes seconds, longer than sampling a small model: keep the
# compiled code on disk so that the next run with the same shapes starts at once (JAX does
# not cache a loop that streams, num_samples=1). JAX_COMPILATION_CACHE_DIR= (empty): off.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.join(os.path.expanduser('~'), '.cache', 'gpt-jax', 'xla'))

import checkpoint  # noqa: E402
import model  # noqa: E402
from model import GPTConfig  # noqa: E402


def fail(msg):
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


if temperature <= 0:
    fail(f'temperature must be > 0, got {temperature} (use --top_k=1 for greedy decoding)')
if top_k < 1:
    fail(f'top_k must be >= 1, got {top_k}')
if not 0 < top_p <= 1:
    fail(f'top_p must be in (0, 1], got {top_p}')
if not 0 < keep <= 1:
    fail(f'keep must be in (0, 1], got {keep}')
if dtype == 'auto':
    dtype = model.default_dtype()

# ----------------------------------------------------------------------------- model
meta = None
if init_from == 'resume':
    try:
        params, model_args, run_config = checkpoint.load_run(out_dir)
    except checkpoint.CheckpointError as e:
        fail(f'{e} (train one with train.py, or sample GPT-2 with --init_from=gpt2)')
    config = GPTConfig(**model_args)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    # the checkpoint's dataset may have its own vocabulary (character-level data)
    meta_path = os.path.join('data', str(run_config.get('dataset')), 'meta.pkl')
    if os.path.exists(meta_path):
        try:
            meta = checkpoint.load(meta_path)
        except checkpoint.CheckpointError as e:
            fail(f'{e}: rerun the dataset\'s prepare script')
        if not meta or not meta.get('stoi') or not meta.get('itos'):
            fail(f'{meta_path} holds no vocabulary (stoi/itos): rerun the dataset\'s prepare script')
elif init_from in model.GPT2_SIZES:
    try:
        params, config = model.from_pretrained(init_from)
    except (OSError, ValueError, RuntimeError) as e:
        fail(str(e))
else:
    fail(f"init_from must be 'resume' or one of {', '.join(model.GPT2_SIZES)}, not {init_from!r}")

# ----------------------------------------------------------------------------- tokenizer
if meta is not None:
    print(f'character vocabulary of {len(meta["stoi"])} from {meta_path}', file=sys.stderr)
    stoi, itos = meta['stoi'], meta['itos']

    def encode(s):
        unknown = sorted(set(c for c in s if c not in stoi))
        if unknown:
            fail(f'the prompt has characters outside the vocabulary: {"".join(unknown)!r} '
                 f'({", ".join(repr(c) for c in unknown)}); the model knows only {"".join(sorted(stoi))!r}')
        return [stoi[c] for c in s]

    def decode_bytes(ids):
        return ''.join(itos[int(i)] for i in ids).encode('utf-8')
else:
    print('no meta.pkl found, assuming GPT-2 encodings', file=sys.stderr)
    import tiktoken
    enc = tiktoken.get_encoding('gpt2')
    encode = lambda s: enc.encode(s, allowed_special={'<|endoftext|>'})
    decode_bytes = enc.decode_bytes

if start.startswith('FILE:'):
    try:
        with open(start[5:], 'r', encoding='utf-8') as f:
            start = f.read()
    except OSError as e:
        fail(f'cannot read the prompt file {start[5:]}: {e.strerror}')
start_ids = encode(start)
if not start_ids:
    fail('the prompt is empty: give at least one token with --start')
if len(start_ids) > config.block_size:
    print(f'warning: the prompt has {len(start_ids)} tokens; the model sees only the last '
          f'{config.block_size} (block_size)', file=sys.stderr)
    start_ids = start_ids[-config.block_size:]

# ----------------------------------------------------------------------------- generate


class Streamer:
    """Prints tokens as they arrive, holding back bytes until they form whole UTF-8 characters."""

    def __init__(self):
        self.pending = b''

    def __call__(self, tok):
        self.pending += decode_bytes(np.asarray(tok)[:1])
        try:
            text = self.pending.decode('utf-8')
        except UnicodeDecodeError:
            if len(self.pending) < 8:  # a character split over tokens: wait for the rest
                return
            text = self.pending.decode('utf-8', errors='replace')
        print(text, end='', flush=True)
        self.pending = b''


idx = jnp.tile(jnp.asarray(start_ids, jnp.int32)[None], (num_samples, 1))
streaming = num_samples == 1
if streaming:
    print(start, end='', flush=True)
t0 = time.time()
out = model.generate(params, idx, jax.random.key(seed), config, max_new_tokens,
                     temperature=temperature, top_k=top_k if top_k < config.vocab_size else None,
                     top_p=top_p if top_p < 1 else None, dtype=jnp.dtype(dtype),
                     keep=max(1, round(keep * config.block_size)),
                     on_token=Streamer() if streaming else None)
out = np.asarray(out)
dt = time.time() - t0
for row in out:
    print('' if streaming else decode_bytes(row).decode('utf-8', errors='replace'))
    print('---------------')
print(f'{num_samples} x {max_new_tokens} new tokens in {dt:.2f}s '
      f'({num_samples * max_new_tokens / dt:,.0f} tokens/s, including compilation or reading it from the cache)', file=sys.stderr)
