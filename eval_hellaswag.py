"""Score a trained model or GPT-2 on HellaSwag: acc and acc_norm, completion style as llm.c.

    python eval_hellaswag.py --init_from=gpt2                  # the validation set, downloaded once
    python eval_hellaswag.py --out_dir=out-char --max_examples=500
    python eval_hellaswag.py --init_from=path/to/gpt2-folder --input=my.jsonl --out_json=predictions.json

Each ending is scored by the cross-entropy of its tokens after the context (hellaswag.py says
how); acc counts the examples whose right ending has the lowest sum, acc_norm the lowest mean.
The last line of stdout is `hellaswag: N examples, acc A, acc_norm B`; progress goes to stderr.
"""
import common

common.exit_on_ctrl_c()
common.errors_as_one_line()  # a UserError anywhere below: one `error:` line, exit status 1

import json
import os
import sys
import time

import jax.numpy as jnp

import checkpoint
import configurator
import devices
import files
import hellaswag
from common import UserError

# ----------------------------------------------------------------------------- settings
init_from = 'resume'  # 'resume' (out_dir/ckpt.pkl), 'gpt2' .. 'gpt2-xl', or a folder with GPT-2 weights
out_dir = 'out'  # the train.py run to score (init_from='resume')
input = ''  # a .jsonl file of examples (ctx, endings, label); '': HellaSwag's validation set, downloaded once into data/hellaswag
url = ''  # where to download the validation set from ('': HellaSwag's own repository, hellaswag.VAL_URL)
max_examples = 0  # score only the first N examples (0: all)
out_json = ''  # also write every example's scores and predictions to this JSON file
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bfloat16 on GPUs, TPUs and CPUs with bf16 instructions
# -----------------------------------------------------------------------------
configurator.configure(globals(), quiet=True)  # stdout carries only the result; each value checked
dtype, why = devices.compute_dtype(dtype)
devices.cache_compilations()  # the scorer's few shapes compile once, then come from the disk
if out_json:  # checked now, not after the work
    files.make_dirs(os.path.dirname(os.path.abspath(out_json)))
    if os.path.isdir(out_json) or not os.access(os.path.dirname(os.path.abspath(out_json)), os.W_OK):
        raise UserError(f'cannot write out_json={out_json}: give a file in a folder you can write to')

# ----------------------------------------------------------------------------- model, examples, tokens
params, config, tok = checkpoint.load_model(init_from, out_dir)
path = input or hellaswag.fetch_val(url or hellaswag.VAL_URL)
examples = hellaswag.load_examples(path, max_examples)
rows = hellaswag.tokenize(examples, tok, config, path, 'score a model whose vocabulary covers them (GPT-2, or a '
                          'BPE: prepare_owt.py), or pass --input=FILE with examples written in its vocabulary')
print(f'{len(examples):,} examples from {path}; tokens: {tok.what}; compute dtype {dtype} ({why})', file=sys.stderr)
if rows.cut_endings:
    print(f'note: {rows.cut_endings:,} of {len(rows.tokens):,} endings are longer than block_size '
          f'({config.block_size} tokens): only their last {config.block_size} tokens are scored', file=sys.stderr)

# ----------------------------------------------------------------------------- score
t0 = time.time()
sums = hellaswag.score(params, config, rows, jnp.dtype(dtype), progress=True)
r = hellaswag.results(sums, rows, [e.label for e in examples])
dt = time.time() - t0
print(f'{len(examples):,} examples in {dt:.1f} s ({1000 * dt / len(examples):.1f} s per 1,000 examples, '
      f'compilation included)', file=sys.stderr)
if out_json:
    report = {'model': out_dir if init_from == 'resume' else init_from, 'input': path, 'examples': len(examples),
              'acc': r.acc, 'acc_norm': r.acc_norm, 'dtype': dtype,
              'predictions': [{'line': e.line, 'ind': e.ind, 'label': e.label, 'pred': int(r.pred[i]),
                               'pred_norm': int(r.pred_norm[i]), 'sum_loss': r.sums[i].tolist(),
                               'mean_loss': r.means[i].tolist(), 'tokens': rows.scored[4 * i:4 * i + 4].tolist()}
                              for i, e in enumerate(examples)]}
    try:
        with files.atomic_write(out_json, 'w') as f:
            json.dump(report, f, indent=1)
    except OSError as e:
        raise UserError(f'could not write {out_json} ({e.strerror})') from None
try:
    print(f'hellaswag: {len(examples):,} examples, acc {r.acc:.4f}, acc_norm {r.acc_norm:.4f}', flush=True)
except BrokenPipeError:
    common.quiet_broken_pipe()
