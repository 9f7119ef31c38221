"""Exact-match accuracy of a trained adder: greedy sums for every example of a split.

    python eval_addition.py                                  # out-addition, the held-out pairs
    python eval_addition.py --out_dir=out-addition3          # the 3-digit model
    python eval_addition.py --split=train --max_examples=5000

The prompt (the 2n digits of a and b) goes in, the model writes the n+1 digits of the sum
greedily (top_k=1), and the example counts as right only if every digit is right. Examples
run in fixed-size batches (the last one padded), so generation compiles once.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
import time

import numpy as np

# ----------------------------------------------------------------------------- settings
out_dir = 'out-addition'  # where ckpt.pkl is
dataset = ''  # '' = the dataset the checkpoint was trained on
split = 'val'  # 'val' (pairs never seen in training) or 'train'
batch_size = 500  # examples per generate call
max_examples = 0  # 0 = every example of the split
show_wrong = 5  # how many wrong examples to print
dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16'
# -----------------------------------------------------------------------------


def accuracy(params, config, examples, n, batch_size, dtype=None):
    """Greedy exact-match accuracy on examples [N, 3n+1] (prompt a, b, then the reversed sum).

    An example is right when the n+1 tokens the model writes after the 2n prompt tokens decode
    (decode_sum) to the example's own sum. Returns (correct, total, wrong_examples), where
    wrong_examples lists (a, b, expected, predicted) for every wrong example; predicted is
    None if the tokens are not n+1 digits.
    """
    import jax
    import jax.numpy as jnp

    import model
    from prepare_addition import decode_example, decode_sum

    dtype = jnp.float32 if dtype is None else dtype
    examples = np.asarray(examples).reshape(-1, 3 * n + 1)
    total = len(examples)
    params = jax.tree_util.tree_map(jnp.asarray, params)  # to the device once, not per batch
    key = jax.random.key(0)  # unused by greedy decoding, but generate takes one
    correct, wrong = 0, []
    for start in range(0, total, batch_size):
        batch = examples[start:start + batch_size]
        prompts = np.zeros((batch_size, 2 * n), np.int32)  # fixed shape: padded rows are ignored
        prompts[:len(batch)] = batch[:, :2 * n]
        out = model.generate(params, jnp.asarray(prompts), key, config, n + 1, top_k=1, dtype=dtype)
        out = np.asarray(out)[:len(batch), 2 * n:]  # [b, n+1]
        for ex, pred_tokens in zip(batch, out):
            a, b, expected = decode_example(ex, n)
            try:
                predicted = decode_sum(pred_tokens, n)
            except ValueError:  # a token that is not a digit
                predicted = None
            if predicted == expected:
                correct += 1
            else:
                wrong.append((a, b, expected, predicted))
    return correct, total, wrong


def main():
    import configurator

    configurator.configure(globals())

    import jax.numpy as jnp

    import common
    from model import GPTConfig

    def fail(msg):
        print(f'error: {msg}', file=sys.stderr)
        sys.exit(1)

    try:
        ckpt = common.load_run(out_dir)
        params, model_args, run_config = ckpt['params'], ckpt['model_args'], ckpt['config']
    except common.UserError as e:
        fail(f'{e}: train first (python prepare_addition.py && python train.py config/train_addition.py)')
    config = GPTConfig(**model_args)
    name = dataset or run_config.get('dataset')
    data_dir = os.path.join('data', name)
    meta_path, bin_path = os.path.join(data_dir, 'meta.pkl'), os.path.join(data_dir, f'{split}.bin')
    for path in (meta_path, bin_path):
        if not os.path.isfile(path):
            fail(f'{path} not found: prepare the dataset first (python prepare_addition.py)')
    try:
        meta = common.load_pickle(meta_path)
    except common.UserError as e:
        fail(str(e))
    if 'example_len' not in meta or meta['example_len'] % 3 != 1:
        fail(f'{data_dir} is not an addition dataset (meta.pkl has no example_len of 3n+1)')
    n = meta.get('digits', (meta['example_len'] - 1) // 3)
    if config.block_size < 3 * n:
        fail(f'the model sees {config.block_size} tokens; {n}-digit addition needs {3 * n}')
    if dtype not in ('float32', 'bfloat16', 'float16'):
        fail(f"dtype must be 'float32', 'bfloat16' or 'float16', not {dtype!r}")
    if batch_size < 1:
        fail('batch_size must be at least 1')

    examples = np.fromfile(bin_path, dtype=np.uint16).reshape(-1, 3 * n + 1)
    if max_examples > 0:
        examples = examples[:max_examples]
    print(f'{out_dir}/ckpt.pkl: {n}-digit addition, '
          f'{len(examples):,} {split} examples')

    t0 = time.time()
    correct, total, wrong = accuracy(params, config, examples, n, batch_size, jnp.dtype(dtype))
    label = 'held-out' if split == 'val' else split
    print(f'{label} accuracy: {correct}/{total} = {100 * correct / max(total, 1):.2f}% '
          f'({time.time() - t0:.1f} s)')
    for a, b, expected, predicted in wrong[:show_wrong]:
        said = '?' if predicted is None else predicted
        print(f'  wrong: {a} + {b} = {expected}, model said {said}')
    if len(wrong) > show_wrong:
        print(f'  ... and {len(wrong) - show_wrong} more wrong')


if __name__ == '__main__':
    main()
