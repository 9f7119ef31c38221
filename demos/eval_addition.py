"""Exact-match accuracy of a trained adder: greedy sums for every example of a split.

    python demos/eval_addition.py                            # out-addition, the held-out pairs
    python demos/eval_addition.py --out_dir=out-addition3    # the 3-digit model
    python demos/eval_addition.py --split=train --max_examples=5000

The prompt (the 2n digits of a and b) goes in, the model writes the n+1 digits of the sum
greedily (top_k=1), and the example counts as right only if every digit is right. Examples
run in fixed-size batches (the last one padded), so generation compiles once.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
import jax.numpy as jnp
import numpy as np

import common
import configurator
import devices
from common import fail
from scoring import accuracy, load_model_and_data

if hasattr(signal, 'SIGPIPE'):  # piped into a program that stops reading (| head): end quietly, at any print
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

# ----------------------------------------------------------------------------- settings
# I/O
out_dir = 'out-addition'  # where ckpt.pkl is
dataset = ''  # '' = the dataset the checkpoint was trained on
split = 'val'  # 'val' (pairs never seen in training) or 'train'
max_examples = 0  # 0 = every example of the split
show_wrong = 5  # how many wrong examples to print
# system
batch_size = 500  # examples per generate call
dtype = 'float32'  # compute dtype: 'float32', 'bfloat16', 'float16', or 'auto' (as train.py)
# -----------------------------------------------------------------------------
configurator.configure(globals(), rules={'split': configurator.Choice('val', 'train')})  # each value checked
dtype, _ = devices.compute_dtype(dtype)

# ----------------------------------------------------------------------------- model and data
out_dir = common.find(out_dir)
try:
    ckpt, config, data_dir, meta = load_model_and_data(out_dir, dataset, 'python demos/prepare_addition.py',
                                                       'python train.py config/train_addition.py')
except common.UserError as e:
    fail(e)
example_len = meta.get('example_len')
if type(example_len) is not int or example_len % 3 != 1 or meta.get('vocab_size') != 10:
    fail(f'{data_dir} is not an addition dataset (its meta.pkl has no example_len of 3n+1 digit tokens); '
         f'make one with python demos/prepare_addition.py')
n = (example_len - 1) // 3
if config.block_size < 3 * n or config.vocab_size < 10:
    fail(f'{out_dir}/ckpt.pkl is not a model of {n}-digit sums (block_size {config.block_size}, vocab_size '
         f'{config.vocab_size}; it needs at least {3 * n} and 10): pass the out_dir of an adder, or its dataset')
examples = np.fromfile(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16).reshape(-1, example_len)
if max_examples > 0:
    examples = examples[:max_examples]

# ----------------------------------------------------------------------------- score
print(f'{out_dir}/ckpt.pkl: {n}-digit addition, {len(examples):,} {split} examples')
t0 = time.time()
correct, total, wrong = accuracy(ckpt['params'], config, examples, n, batch_size, jnp.dtype(dtype))
label = 'held-out' if split == 'val' else split
try:
    print(f'{label} accuracy: {correct}/{total} = {100 * correct / max(total, 1):.2f}% '
          f'({time.time() - t0:.1f} s)')
    for a, b, expected, predicted in wrong[:show_wrong]:
        print(f'  wrong: {a} + {b} = {expected}, model said {"?" if predicted is None else predicted}')
    if len(wrong) > show_wrong:
        print(f'  ... and {len(wrong) - show_wrong} more wrong')
    sys.stdout.flush()  # inside the try: a reader that stopped early (| head) shows up here
except BrokenPipeError:
    common.quiet_broken_pipe()
