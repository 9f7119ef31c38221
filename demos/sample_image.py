"""Draw images with a GPT trained on palette tokens (prepare_image.py), as a PNG grid.

    python demos/sample_image.py                             # out-image -> out-image/samples.png
    python demos/sample_image.py --num_samples=64 --top_k=50 --out=top50.png
    python demos/sample_image.py --eval=True                 # also: val loss in nats per token

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

import jax
import jax.numpy as jnp
import numpy as np

import common
import configurator
import devices
import model
from common import fail
from prepare_image import image_grid, tokens_to_pixels, write_png
from scoring import load_model_and_data, val_loss

# ----------------------------------------------------------------------------- settings
# I/O
out_dir = 'out-image'  # where ckpt.pkl is
dataset = ''  # '' = the dataset the checkpoint was trained on
out = 'samples.png'  # the PNG grid, inside out_dir unless an absolute path
# sampling
num_samples = 16  # images to draw
batch_size = 16  # images per generate call (the last call is padded: one compilation)
nrow = 0  # images per row of the grid; 0 = a square-ish grid
temperature = 1.0  # < 1 sharper, > 1 more random; must be > 0
top_k = None  # e.g. 50: sample only among the k most likely colours
top_p = None  # e.g. 0.9: nucleus sampling
seed = 1337  # the same seed draws the same images
# val loss
eval = False  # print the mean val.bin loss (nats per token) before sampling
eval_batch_size = 64  # images per loss batch
# system
dtype = 'float32'  # compute dtype: 'float32', 'bfloat16', 'float16', or 'auto' (as train.py)
# -----------------------------------------------------------------------------
configurator.configure(globals(), rules={'num_samples': configurator.Count(0)})  # each value checked
compute_dtype = jnp.dtype(devices.compute_dtype(dtype)[0])

# ----------------------------------------------------------------------------- model and data
out_dir = common.find(out_dir)
try:
    ckpt, config, data_dir, meta = load_model_and_data(out_dir, dataset, 'python demos/prepare_image.py --size=16',
                                                       'python train.py config/train_image.py')
except common.UserError as e:
    fail(e)
if not all(k in meta for k in ('palette', 'image_size', 'start_token', 'example_len')):
    fail(f'{data_dir} is not an image dataset (its meta.pkl has no palette): make one with '
         f'python demos/prepare_image.py --size=16')
palette, size, start_token = meta['palette'], meta['image_size'], meta['start_token']
if config.block_size < size * size or config.vocab_size <= start_token:
    fail(f'{out_dir}/ckpt.pkl is not a model of {size}x{size} images of {len(palette)} colours (block_size '
         f'{config.block_size}, vocab_size {config.vocab_size}): pass the out_dir of an image model, or its dataset')
print(f'{out_dir}/ckpt.pkl: {os.path.basename(data_dir)}: {size}x{size} images, {len(palette)} colours')
params = jax.tree_util.tree_map(jnp.asarray, ckpt['params'])

# ----------------------------------------------------------------------------- val loss
if eval:
    examples = np.fromfile(os.path.join(data_dir, 'val.bin'), dtype=np.uint16).reshape(-1, meta['example_len'])
    t0 = time.time()
    loss = val_loss(params, config, examples, meta.get('prompt_len', 0), eval_batch_size, compute_dtype)
    print(f'val loss: {loss:.4f} nats per pixel token ({loss / math.log(2):.4f} bits), '
          f'{len(examples):,} images x {examples.shape[1] - 1} tokens ({time.time() - t0:.1f} s)')

# ----------------------------------------------------------------------------- draw
if num_samples > 0:
    t0 = time.time()
    prompt = jnp.full((batch_size, 1), start_token, jnp.int32)
    keys = jax.random.split(jax.random.key(seed), -(-num_samples // batch_size))
    tokens = np.concatenate([
        np.asarray(model.generate(params, prompt, key, config, size * size, temperature=temperature,
                                  top_k=top_k, top_p=top_p, dtype=compute_dtype))
        for key in keys])[:num_samples]  # [num_samples, 1 + size*size]
    images = tokens_to_pixels(tokens, palette, size)
    path = os.path.join(out_dir, out)
    write_png(path, image_grid(images, nrow=nrow or math.ceil(math.sqrt(num_samples))))
    print(f'{num_samples} samples in {time.time() - t0:.1f} s -> {path}')
