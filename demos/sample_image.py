"""Draw images with a GPT trained on palette tokens (prepare_image.py), as a PNG grid.

    python sample_image.py                                   # out-image -> out-image/samples.png
    python sample_image.py --num_samples=64 --top_k=50 --out=top50.png
    python sample_image.py --eval=True                       # also: val loss in nats per token

Each image starts from the start token and is sampled one pixel token at a time, row by
row (size*size tokens). --out is written inside out_dir unless it is an absolute path.
With --eval=True the mean loss over every token of val.bin (every pixel of every test
image, the first included) is printed first; --num_samples=0 then skips the drawing.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
import math
import time

import numpy as np

# ----------------------------------------------------------------------------- settings
out_dir = 'out-image'  # where ckpt.pkl is
dataset = ''  # '' = the dataset the checkpoint was trained on
num_samples = 16  # images to draw
batch_size = 16  # images per generate call (the last call is padded: one compilation)
nrow = 0  # images per row of the grid; 0 = a square-ish grid
temperature = 1.0
top_k = None  # e.g. 50: sample only among the k most likely colours
top_p = None  # e.g. 0.9: nucleus sampling
seed = 1337
out = 'samples.png'
eval = False  # print the mean val.bin loss (nats per token) before sampling
eval_batch_size = 64  # images per loss batch
dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16'
# -----------------------------------------------------------------------------


def _loss_sum(params, x, y, config, dtype):
    """Summed cross-entropy over the targets y that are not -1, and how many there are."""
    import jax
    import jax.numpy as jnp

    import model

    logits = model.forward(params, x, config, dtype=dtype).reshape(-1, config.vocab_size)
    y = y.reshape(-1)
    valid = y != -1
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, jnp.where(valid, y, 0)[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(valid, logz - picked, 0.0)), valid.sum()


def val_loss(params, config, examples, prompt_len, batch_size, dtype):
    """Mean cross-entropy (nats per scored token) over examples [N, T+1] with x = ex[:-1],
    y = ex[1:] and the first prompt_len-1 targets unscored, as train.py scores them.
    Fixed-size batches (the last one padded with unscored rows), one compilation."""
    global _loss_sum_jit
    import jax
    import jax.numpy as jnp

    if _loss_sum_jit is None:
        _loss_sum_jit = jax.jit(_loss_sum, static_argnames=('config', 'dtype'))
    params = jax.tree_util.tree_map(jnp.asarray, params)
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start:start + batch_size].astype(np.int32)
        x = np.zeros((batch_size, examples.shape[1] - 1), np.int32)
        y = np.full_like(x, -1)  # padded rows score nothing
        x[:len(batch)], y[:len(batch)] = batch[:, :-1], batch[:, 1:]
        if prompt_len > 1:
            y[:, :prompt_len - 1] = -1
        s, c = _loss_sum_jit(params, x, y, config, jnp.dtype(dtype))
        total, count = total + float(s), count + int(c)
    return total / max(count, 1)


_loss_sum_jit = None  # jitted on first use: jax is imported only once settings are read


def main():
    import configurator

    configurator.configure(globals())

    import jax
    import jax.numpy as jnp

    import common
    import model
    from model import GPTConfig
    from prepare_image import image_grid, tokens_to_pixels, write_png

    def fail(msg):
        print(f'error: {msg}', file=sys.stderr)
        sys.exit(1)

    try:
        ckpt = common.load_run(out_dir)
        params, model_args, run_config = ckpt['params'], ckpt['model_args'], ckpt['config']
    except common.UserError as e:
        fail(f'{e}: train first (python prepare_image.py --size=16 && python train.py config/train_image.py)')
    config = GPTConfig(**model_args)
    name = dataset or run_config.get('dataset')
    data_dir = os.path.join('data', name)
    meta_path = os.path.join(data_dir, 'meta.pkl')
    if not os.path.isfile(meta_path):
        fail(f'{meta_path} not found: prepare the dataset first (python prepare_image.py --size=16)')
    try:
        meta = common.load_pickle(meta_path)
        palette, size, start_token = meta['palette'], meta['image_size'], meta['start_token']
    except common.UserError as e:
        fail(str(e))
    except KeyError as e:
        fail(f'{meta_path} has no {e}: is {name} an image dataset (prepare_image.py)?')
    if config.block_size < size * size:
        fail(f'the model sees {config.block_size} tokens; a {size}x{size} image needs {size * size}')
    if dtype not in ('float32', 'bfloat16', 'float16'):
        fail(f"dtype must be 'float32', 'bfloat16' or 'float16', not {dtype!r}")
    if num_samples < 0 or batch_size < 1 or eval_batch_size < 1 or temperature <= 0:
        fail('num_samples must be >= 0, batch_size and eval_batch_size >= 1, temperature > 0')
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        fail(f'top_k must be a positive integer or None, not {top_k!r}')
    if top_p is not None and (type(top_p) not in (int, float) or not 0 < top_p <= 1):
        fail(f'top_p must be in (0, 1] or None, not {top_p!r}')
    compute_dtype = jnp.dtype(dtype)
    print(f'{out_dir}/ckpt.pkl: {name}: {size}x{size} images, '
          f'{len(palette)} colours')

    if eval:
        val_path = os.path.join(data_dir, 'val.bin')
        if not os.path.isfile(val_path):
            fail(f'{val_path} not found')
        examples = np.fromfile(val_path, dtype=np.uint16).reshape(-1, meta['example_len'])
        t0 = time.time()
        loss = val_loss(params, config, examples, meta.get('prompt_len', 0), eval_batch_size,
                        compute_dtype)
        print(f'val loss: {loss:.4f} nats per pixel token ({loss / math.log(2):.4f} bits), '
              f'{len(examples):,} images x {examples.shape[1] - 1} tokens ({time.time() - t0:.1f} s)')

    if num_samples == 0:
        return
    t0 = time.time()
    params = jax.tree_util.tree_map(jnp.asarray, params)
    prompt = jnp.full((batch_size, 1), start_token, jnp.int32)
    keys = jax.random.split(jax.random.key(seed), -(-num_samples // batch_size))
    tokens = np.concatenate([
        np.asarray(model.generate(params, prompt, key, config, size * size, temperature=temperature,
                                  top_k=top_k, top_p=top_p, dtype=compute_dtype))
        for key in keys])[:num_samples]  # [num_samples, 1 + size*size]
    images = tokens_to_pixels(tokens, palette, size)
    per_row = nrow if nrow > 0 else math.ceil(math.sqrt(num_samples))
    path = os.path.join(out_dir, out)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_png(path, image_grid(images, nrow=per_row))
    print(f'{num_samples} samples in {time.time() - t0:.1f} s -> {path}')


if __name__ == '__main__':
    main()
