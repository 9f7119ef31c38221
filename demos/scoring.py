"""How the demos score a model on a dataset of fixed-length examples: an adder's exact-match
accuracy (eval_addition.py) and the mean loss over every scored token (sample_image.py)."""
import os

import jax
import jax.numpy as jnp
import numpy as np

import checkpoint
import common
import datafiles
import model
from prepare_addition import decode_example, decode_sum


def load_model_and_data(out_dir, dataset, prepare, train):
    """out_dir's checkpoint and the dataset it was trained on (train.py records where it was),
    unless dataset names another -> (ckpt, GPTConfig, data_dir, meta). prepare and train are the
    commands that make what is missing, for the error messages (UserError)."""
    try:
        ckpt, config = checkpoint.load_run(common.find(out_dir))
    except common.UserError as e:
        raise common.UserError(f'{e}; to train one: {prepare} && {train}') from None
    if dataset:
        data_dir = common.find(os.path.join('data', dataset))
    else:
        data_dir = ckpt['config'].get('data_dir') or common.find(os.path.join('data', str(ckpt['config'].get('dataset'))))
    return ckpt, config, data_dir, datafiles.check_dataset(data_dir, prepare)


def accuracy(params, config, examples, n, batch_size, dtype=jnp.float32):
    """Greedy exact-match accuracy on examples [N, 3n+1] (prompt a, b, then the reversed sum).

    An example is right when the n+1 tokens the model writes after the 2n prompt tokens decode
    (decode_sum) to the example's own sum. Returns (correct, total, wrong_examples), where
    wrong_examples lists (a, b, expected, predicted) for every wrong example; predicted is
    None if the tokens are not n+1 digits. Examples run in fixed-size batches (the last one
    padded), so generation compiles once.
    """
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


batch_loss = jax.jit(model.loss_fn, static_argnames=('config', 'dtype'))  # compiled once per batch shape


def val_loss(params, config, examples, prompt_len, batch_size, dtype=jnp.float32):
    """Mean cross-entropy (nats per scored token) over examples [N, T+1] with x = ex[:-1],
    y = ex[1:] and the first prompt_len-1 targets unscored, as train.py scores them.
    Fixed-size batches (the last one padded with unscored rows), one compilation."""
    params = jax.tree_util.tree_map(jnp.asarray, params)
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size].astype(np.int32)
        x = np.zeros((batch_size, examples.shape[1] - 1), np.int32)
        y = np.full_like(x, -1)  # padded rows score nothing
        x[:len(batch)], y[:len(batch)] = batch[:, :-1], batch[:, 1:]
        if prompt_len > 1:
            y[:, :prompt_len - 1] = -1
        scored = int((y != -1).sum())
        # model.loss_fn is the mean over the batch's scored targets: times their count, their sum
        total += float(batch_loss(params, x, y, config, dtype=dtype)) * scored
        count += scored
    return total / max(count, 1)
