"""Sample from a trained model or from GPT-2.

    python sample.py --out_dir=out-char --start="ROMEO:"
    python sample.py --init_from=gpt2 --start="FILE:prompt.txt" --num_samples=3

--start is the prompt: text, or FILE:path to read it from a UTF-8 file. All samples are
generated together as one batch: the prompt goes through the model once (into a key-value
cache), then a compiled loop adds one token per step. One sample streams as it is written.
"""
import common

common.exit_on_ctrl_c()
common.errors_as_one_line()  # a UserError anywhere below: one `error:` line, exit status 1

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import checkpoint
import configurator
import devices
import model
from common import UserError

# ----------------------------------------------------------------------------- settings
init_from = 'resume'  # 'resume' (out_dir/ckpt.pkl), 'gpt2' .. 'gpt2-xl', or a folder with GPT-2 weights
out_dir = 'out'  # the train.py run to sample from (init_from='resume')
start = '\n'  # the prompt: text, '<|endoftext|>', or 'FILE:prompt.txt' to read it from a file
num_samples = 10  # samples, generated together as one batch (1: streamed as it is written)
max_new_tokens = 500  # tokens to add to each sample
temperature = 0.8  # < 1 sharper, > 1 more random; must be > 0
top_k = 200  # draw only from the top_k most likely tokens (>= the vocabulary: no limit)
top_p = 1.0  # nucleus sampling: only from the most likely tokens that make up this probability (1.0: off)
keep_fraction = 0.75  # past block_size the context moves on to this fraction of it (1.0: nanoGPT's window)
seed = 1337
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bfloat16 on GPUs, TPUs and CPUs with bf16 instructions
# -----------------------------------------------------------------------------
configurator.configure(globals(), quiet=True)  # stdout carries only the samples; each value checked
dtype, _ = devices.compute_dtype(dtype)
# Compiling the sampling loop takes seconds, longer than sampling a small model: the compiled
# code is kept on disk (JAX does not cache a loop that streams, num_samples=1).
devices.cache_compilations()

# ----------------------------------------------------------------------------- model and tokenizer
params, config, tok = checkpoint.load_model(init_from, out_dir)  # a run's checkpoint, or GPT-2's weights

# refused before any work where it cannot fit: the KV cache, the tokens and the logits of all samples
# at once, beside the weights, and a random key (two uint32) for each new token
cache_bytes = 2 * config.n_layer * num_samples * config.block_size * config.n_embd * jnp.dtype(dtype).itemsize
devices.check_fits(cache_bytes + 4 * num_samples * (max_new_tokens + config.vocab_size) + 4 * model.num_params(params)
                   + 8 * max_new_tokens,
                   jax.devices()[0], f'sampling {num_samples:,} x {max_new_tokens:,} tokens',
                   'lower num_samples or max_new_tokens')

if start.startswith('FILE:'):
    try:
        with open(start[5:], encoding='utf-8') as f:
            start = f.read()
    except OSError as e:
        raise UserError(f'cannot read the prompt file {start[5:]}: {e.strerror}')
    except UnicodeDecodeError as e:
        raise UserError(f'the prompt file {start[5:]} is not UTF-8 text (bad byte at offset {e.start})')
start_ids = tok.encode(start)
if not start_ids:
    raise UserError('the prompt is empty: give at least one token with --start')
if max(start_ids) >= config.vocab_size:  # a GPT-2 folder with a cut-down vocabulary
    raise UserError(f'the prompt has token {max(start_ids)}, past the model\'s vocabulary of {config.vocab_size} '
                    f'tokens: write the prompt with tokens the model knows')
print(f'tokens: {tok.what}', file=sys.stderr)
if len(start_ids) > config.block_size:
    print(f'warning: the prompt has {len(start_ids)} tokens; the model sees only the last '
          f'{config.block_size} (block_size)', file=sys.stderr)
    start_ids = start_ids[-config.block_size:]

# ----------------------------------------------------------------------------- generate


class Streamer:
    """Prints tokens as they arrive, holding back bytes until they form whole UTF-8 characters."""

    def __init__(self):
        self.pending = b''

    def __call__(self, tok_ids):
        self.pending += tok.decode_bytes(np.asarray(tok_ids)[:1])
        try:
            text = self.pending.decode('utf-8')
        except UnicodeDecodeError:
            if len(self.pending) < 8:  # a character split over tokens: wait for the rest
                return
            text = self.pending.decode('utf-8', errors='replace')
        print(text, end='', flush=True)
        self.pending = b''


try:
    idx = jnp.tile(jnp.asarray(start_ids, jnp.int32)[None], (num_samples, 1))
    streaming = num_samples == 1
    if streaming:
        print(start, end='', flush=True)
    t0 = time.time()
    out = model.generate(params, idx, jax.random.key(seed), config, max_new_tokens,
                         temperature=temperature, top_k=top_k if top_k < config.vocab_size else None,
                         top_p=top_p if top_p < 1 else None, dtype=jnp.dtype(dtype),
                         keep_tokens=max(1, round(keep_fraction * config.block_size)),
                         on_token=Streamer() if streaming else None)
    out = np.asarray(out)
    dt = time.time() - t0
    for row in out:
        print('' if streaming else tok.decode(row))
        print('---------------', flush=True)
except BrokenPipeError:  # the reader stopped early (| head): that is fine
    common.quiet_broken_pipe()
print(f'{num_samples} x {max_new_tokens} new tokens in {dt:.2f}s ({num_samples * max_new_tokens / max(dt, 1e-9):,.0f} '
      f'tokens/s, including compilation or reading it from the cache)', file=sys.stderr)
