"""Train a GPT: one data-parallel loop from a laptop CPU to many GPUs on many hosts.

    python train.py config/train_char.py                      # char-level Shakespeare on the CPU
    python train.py config/train_gpt2.py --batch_size=8       # GPT-2 124M on OpenWebText

Every device runs the same per-device step on its own slice of the batch and averages
gradients with lax.pmean (pmap-style code, written with shard_map under jit). With
jax.distributed (set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or run under
Slurm) the same loop spans hosts. Checkpoints (out_dir/ckpt.pkl) resume exactly.
"""
import fastmalloc  # first: restarts this process with a faster allocator, when one is installed

import atexit
import difflib
import json
import math
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

import common
import configurator
import model
from common import fail
from model import GPTConfig
from plot import plot_losses

# ----------------------------------------------------------------------------- settings
# I/O
out_dir = 'out'  # where ckpt.pkl, log.jsonl and loss.png go
eval_interval = 2000  # evaluate every this many iterations (and at the end)
log_interval = 1  # print a progress line every this many iterations
eval_iters = 200  # batches per evaluation, of train and of val
eval_only = False  # evaluate once and exit
always_save_checkpoint = True  # save at every evaluation; False: only when val loss improves
init_from = 'scratch'  # 'scratch', 'resume' (out_dir/ckpt.pkl), 'gpt2' .. 'gpt2-xl', or a GPT-2 folder
overwrite = False  # let a 'scratch' run replace a checkpoint already in out_dir
# wandb logging
wandb_log = False  # log to Weights & Biases (pip install wandb)
wandb_project = 'owt'
wandb_run_name = 'gpt2'
# data
dataset = 'openwebtext'  # data/<dataset>/ holds train.bin, val.bin and meta.pkl
gradient_accumulation_steps = 40  # micro-batches per optimizer step
batch_size = 12  # sequences per micro-batch: per GPU, or per process on a CPU (split over its cores)
block_size = 1024  # tokens of context
# model
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0  # 0 for pretraining, try 0.1+ for finetuning
bias = True  # biases in Linears and LayerNorms, as GPT-2
# optimizer
optimizer = 'adamw'  # 'adamw' (nanoGPT's), or 'muon': Muon for the blocks' weight matrices, AdamW for the rest
learning_rate = 6e-4  # AdamW's peak learning rate
max_iters = 600000  # optimizer steps in all
weight_decay = 1e-1  # AdamW's, on matrices and embeddings only
beta1 = 0.9  # AdamW's
beta2 = 0.95  # AdamW's
grad_clip = 1.0  # clip gradients at this global norm, 0 to disable
muon_lr = 0.02  # Muon's peak learning rate (optimizer='muon')
muon_momentum = 0.95  # Muon's momentum (Nesterov)
muon_weight_decay = 0.0  # Muon's decoupled weight decay
# learning rate schedule: linear warmup, then cosine decay to min_lr (or constant, then a cooldown)
decay_lr = True  # False: a constant learning rate
warmup_iters = 2000  # linear warmup over this many iterations
lr_decay_iters = 600000  # the decay ends here, then min_lr (~= max_iters per Chinchilla)
min_lr = 6e-5  # ~= learning_rate / 10 per Chinchilla (Muon: the same fraction of muon_lr)
cooldown_iters = 0  # 0: cosine decay; N: constant after warmup, then linear to min_lr over the last N iterations before lr_decay_iters
# system
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bfloat16 on GPUs and CPUs with bf16 instructions
cpu_devices = 0  # CPU: JAX devices to split each process's batch over (0: one per core, up to 8)
remat = False  # recompute each block's activations in the backward pass: less memory, ~1/3 more compute
peak_tflops = 0.0  # per-device peak for MFU; 0 = known GPU table, or measured on a CPU
seed = 1337
# -----------------------------------------------------------------------------
config = configurator.configure(globals())

# ----------------------------------------------------------------------------- checks
# every setting is checked here, before any work starts
for key in ('eval_interval', 'log_interval', 'eval_iters', 'gradient_accumulation_steps', 'batch_size',
            'block_size', 'n_layer', 'n_head', 'n_embd'):
    if config[key] < 1:
        fail(f'{key} must be at least 1, not {config[key]}')
for key in ('max_iters', 'warmup_iters', 'lr_decay_iters', 'cooldown_iters', 'weight_decay', 'grad_clip',
            'min_lr', 'muon_weight_decay', 'peak_tflops', 'cpu_devices'):
    if config[key] < 0:
        fail(f'{key} must not be negative, not {config[key]}')
for key in ('learning_rate', 'muon_lr'):
    if not 0 < config[key] < math.inf:
        fail(f'{key} must be a positive number, not {config[key]}')
for key in ('beta1', 'beta2', 'muon_momentum'):
    if not 0 <= config[key] < 1:
        fail(f'{key} must be at least 0 and below 1, not {config[key]}')
if decay_lr and warmup_iters > lr_decay_iters:
    fail(f'warmup_iters ({warmup_iters}) is longer than lr_decay_iters ({lr_decay_iters}): the decay '
         f'would end before the warmup; make lr_decay_iters at least warmup_iters')
if decay_lr and cooldown_iters > lr_decay_iters - warmup_iters:
    fail(f'cooldown_iters ({cooldown_iters}) must fit between warmup_iters ({warmup_iters}) and '
         f'lr_decay_iters ({lr_decay_iters})')
if optimizer not in ('adamw', 'muon'):
    fail(f"optimizer must be 'adamw' or 'muon', not {optimizer!r}")
if dtype not in ('auto', 'float32', 'bfloat16', 'float16'):
    fail(f"dtype must be 'float32', 'bfloat16', 'float16' or 'auto', not {dtype!r}")
try:  # the model's shape: n_embd a multiple of n_head, dropout in [0, 1), ...
    GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, dropout=dropout)
except ValueError as e:
    fail(e)
if wandb_log:
    try:
        import wandb
    except ImportError:
        fail('wandb_log=True needs the wandb package: pip install wandb')

# ----------------------------------------------------------------------------- devices
common.split_cpu(batch_size, cpu_devices)  # a CPU: one JAX device per core, each with its share of the batch
common.cache_compilations()  # the next run of the same shapes skips compiling
# Several hosts: JAX's own coordinator variables, or a cluster JAX detects (Slurm, Open MPI).
if os.environ.get('JAX_COORDINATOR_ADDRESS') or int(os.environ.get('SLURM_NTASKS', '1')) > 1 \
        or int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1:
    env_int = lambda name: int(os.environ[name]) if name in os.environ else None
    jax.distributed.initialize(num_processes=env_int('JAX_NUM_PROCESSES'), process_id=env_int('JAX_PROCESS_ID'))
master = jax.process_index() == 0
n_devices, n_processes = jax.device_count(), jax.process_count()
log = print if master else (lambda *a, **k: None)

# One 1-D mesh over every device of every process. Params and optimizer state are
# replicated (P()); batches are split along their batch axis ('data').
mesh = jax.make_mesh((n_devices,), ('data',))
replicated = NamedSharding(mesh, P())
batch_sharding = NamedSharding(mesh, P(None, 'data'))  # [micro-steps, batch, time]
on_cpu = jax.default_backend() == 'cpu'
local_batch = batch_size * (1 if on_cpu else jax.local_device_count())  # rows this process feeds per micro-step
global_batch = local_batch * n_processes
if local_batch % jax.local_device_count():
    fail(f'batch_size {batch_size} does not split evenly over the {jax.local_device_count()} CPU devices of a process')
if dtype == 'auto':
    dtype, why = model.default_dtype(), 'auto: ' + ('a GPU' if not on_cpu else 'this CPU has bf16 instructions'
                                                    if model.default_dtype() == 'bfloat16' else 'this CPU has no bf16 instructions')
else:
    why = 'set'
compute_dtype = jnp.dtype(dtype)
log(f'devices: {n_devices} ({jax.devices()[0].device_kind}) on {n_processes} process(es); '
    f'compute dtype {dtype} ({why}); memory allocator {fastmalloc.ALLOCATOR}')


def to_host(tree):  # replicated arrays: this process's own copy (works on one host and on many)
    return jax.tree_util.tree_map(lambda a: np.asarray(a.addressable_data(0)), tree)


# ----------------------------------------------------------------------------- the run
# One run at a time in an out_dir: process 0 holds a lock on it until it ends, however it ends.
ckpt_path = os.path.join(common.find(out_dir), 'ckpt.pkl')
out_dir, ckpt = os.path.dirname(ckpt_path), None
if master:
    try:
        if not os.path.exists(out_dir):  # a run stopped before it wrote anything leaves no folder
            atexit.register(common.remove_if_unused, out_dir, ('.lock', 'log.jsonl'))
        lock = common.lock_dir(out_dir)
        common.remove_stale_temporaries(out_dir)  # what saves killed half-way left
        log_fd = os.open(os.path.join(out_dir, 'log.jsonl'), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        common.drop_partial_last_line(log_fd)
    except common.UserError as e:
        fail(e)
    except OSError as e:
        fail(f'cannot write to out_dir {out_dir} ({e.strerror})')
if init_from == 'scratch' and os.path.exists(ckpt_path) and not overwrite and not eval_only:
    fail(f'{ckpt_path} already holds a checkpoint: continue it with --init_from=resume, give this run '
         f'another --out_dir, or replace it on purpose with --overwrite=True')
if init_from == 'resume':  # the model is the checkpoint's: settings given for this run must agree with it
    try:
        ckpt = common.load_run(out_dir)
        missing = {'opt_state', 'iter_num', 'best_val_loss', 'data_rng_state'} - set(ckpt)
        if missing:
            raise common.UserError(f'{ckpt_path} is not a checkpoint written by train.py (no {", ".join(sorted(missing))})')
    except common.UserError as e:
        fail(e)
    for key in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias'):
        saved = ckpt['model_args'][key]
        if key in configurator.overridden(globals()) and config[key] != saved:
            fail(f'{key} is {config[key]!r} for this run but {saved!r} in {ckpt_path}: a run resumes with its '
                 f'own model; drop --{key}, or train a new model in another out_dir')
        config[key] = saved
    n_layer, n_head, n_embd, block_size, bias = (config[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias'))
    if ckpt['config'].get('optimizer', 'adamw') != optimizer:
        fail(f'{ckpt_path} was trained with optimizer={ckpt["config"].get("optimizer", "adamw")!r}: resume with '
             f'the same optimizer')

# ----------------------------------------------------------------------------- data
data_dir = common.find(os.path.join('data', dataset))
try:
    meta = common.check_dataset(data_dir, 'python prepare_char.py for shakespeare_char, '
                                          'python prepare_owt.py for openwebtext')
except common.UserError as e:
    fail(e)
# Datasets of fixed-length examples (meta example_len) are sampled from example boundaries,
# and the first prompt_len tokens of each example are given, not scored.
example_len, prompt_len = meta.get('example_len'), meta.get('prompt_len', 0)
if example_len and example_len - 1 > block_size:
    fail(f'{dataset} has examples of {example_len} tokens: block_size must be at least {example_len - 1}')
seq_len = example_len - 1 if example_len else block_size  # tokens per training sequence
tokens_per_iter = gradient_accumulation_steps * global_batch * seq_len
splits = {split: np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r') for split in ('train', 'val')}
for split, data in splits.items():
    if len(data) <= seq_len and not example_len:
        fail(f'{data_dir}/{split}.bin has {len(data):,} tokens, fewer than a sequence of block_size + 1 '
             f'({seq_len + 1}); lower block_size or prepare more text')
log(f'tokens per iteration: {tokens_per_iter:,} = batch {batch_size} x '
    + (f'{n_processes} process(es), each split over {n_devices // n_processes} CPU device(s)' if on_cpu else
       f'{n_devices // n_processes} devices x {n_processes} process(es)')
    + f' x {gradient_accumulation_steps} accumulation steps x {seq_len} tokens')
if not eval_only and init_from == 'scratch' and (tokens_per_iter > len(splits['train']) / 10 or warmup_iters >= max_iters):
    log(f'warning: {tokens_per_iter:,} tokens per iteration and {warmup_iters:,} warmup iterations are large '
        f'for {len(splits["train"]):,} training tokens and {max_iters:,} iterations (GPT-2-sized defaults?); '
        f'config/train_char.py is a starting point for small data')
token_bytes = common.token_byte_lengths(meta)  # UTF-8 bytes each token id decodes to, for bits per byte


def get_batch(split, rng, n_micro, whole=False):
    """Random sequences -> x, y of [n_micro, local_batch, seq_len], int32, for this process.
    The offsets are drawn for the whole global batch from one stream shared by all processes,
    and each process reads its own slice (whole=True: all of them): the data a step sees does
    not depend on how the batch is spread over devices and hosts."""
    data = splits[split]
    if example_len:
        ix = rng.integers(len(data) // example_len, size=(n_micro, global_batch)) * example_len
    else:
        ix = rng.integers(len(data) - seq_len, size=(n_micro, global_batch))
    ix = ix if whole else own_rows(ix)
    xy = np.stack([data[i:i + seq_len + 1] for i in ix.ravel()]).astype(np.int32)
    xy = xy.reshape(n_micro, ix.shape[1], seq_len + 1)
    x, y = xy[..., :-1], xy[..., 1:].copy()
    if prompt_len > 1:
        y[..., :prompt_len - 1] = -1  # predictions of prompt tokens are not scored
    return x, y


def own_rows(a):  # this process's rows of a [n_micro, global_batch, ...] array
    mine = jax.process_index() * local_batch
    return a[:, mine:mine + local_batch]


def to_devices(x, y):
    return (jax.make_array_from_process_local_data(batch_sharding, x),
            jax.make_array_from_process_local_data(batch_sharding, y))


# ----------------------------------------------------------------------------- model
iter_num, best_val_loss, data_rng_state = 0, 1e9, None
gpt2_vocab = meta.get('tokenizer') == 'gpt2' or 'vocab_size' not in meta  # no meta.pkl: GPT-2 BPE
vocab_size = 50304 if gpt2_vocab else meta['vocab_size']  # GPT-2's 50257 padded up to a multiple of 64
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                  vocab_size=vocab_size, dropout=dropout)
try:
    if init_from == 'scratch':
        gptconf = GPTConfig(**model_args)
        log(f'initializing a new model from scratch (vocab_size {vocab_size})')
        params = model.init_params(gptconf, jax.random.key(seed))
    elif init_from == 'resume':
        log(f'resuming training from {ckpt_path}')
        if ckpt['model_args']['vocab_size'] != vocab_size:
            fail(f'{ckpt_path} has a vocabulary of {ckpt["model_args"]["vocab_size"]} tokens but {data_dir} one of '
                 f'{vocab_size}: resume on the dataset it was trained on (--dataset={ckpt["config"].get("dataset")})')
        gptconf = GPTConfig(**{**ckpt['model_args'], 'dropout': dropout})  # only dropout may change
        params, data_rng_state = ckpt['params'], ckpt['data_rng_state']
        iter_num, best_val_loss = ckpt['iter_num'], ckpt['best_val_loss']
    elif init_from in model.GPT2_SIZES or os.path.isdir(init_from):
        log(f'initializing from OpenAI GPT-2 weights: {init_from}')
        if not gpt2_vocab:
            fail(f'{data_dir} has its own vocabulary of {vocab_size} tokens; GPT-2 weights need a dataset '
                 f'tokenized with GPT-2 BPE (prepare_owt.py without --vocab_size)')
        params, gptconf = model.from_pretrained(init_from)
        if gptconf.vocab_size < 50257:
            fail(f"{init_from} holds a model of {gptconf.vocab_size} tokens, fewer than GPT-2 BPE's 50,257 "
                 f'that {data_dir} is tokenized with: start from GPT-2 weights of the full vocabulary')
        gptconf = GPTConfig(**{**asdict(gptconf), 'dropout': dropout})  # only dropout may change
        if block_size < gptconf.block_size:  # model surgery: keep the first block_size positions
            params['wpe'] = params['wpe'][:block_size]
            gptconf = GPTConfig(**{**asdict(gptconf), 'block_size': block_size})
    else:
        close = difflib.get_close_matches(init_from, ['scratch', 'resume', *model.GPT2_SIZES], n=1)
        fail(f"init_from must be 'scratch', 'resume', one of {', '.join(model.GPT2_SIZES)} or a folder with "
             f"GPT-2 weights, not {init_from!r}" + (f" (did you mean '{close[0]}'?)" if close else ''))
except (common.UserError, ValueError, OSError, RuntimeError, KeyError, TypeError) as e:
    fail(f'{e}' if not isinstance(e, (KeyError, TypeError)) else f'{ckpt_path} is not a checkpoint of train.py ({e!r})')
model_args = asdict(gptconf)
if block_size > gptconf.block_size:
    fail(f"block_size {block_size} is larger than the model's {gptconf.block_size}")
log(f'number of parameters: {model.num_params(params) / 1e6:.2f}M')

# ----------------------------------------------------------------------------- optimizer


def lr_factor(it):
    """The learning rate at iteration `it`, as a fraction of the peak: a linear warmup, then a
    cosine decay (or constant, then a linear cooldown over cooldown_iters) down to
    min_lr / learning_rate at lr_decay_iters, then flat. One function for the optimizer (traced
    step counts) and the log (Python ints)."""
    xp = np if isinstance(it, (int, np.integer)) else jnp  # the log: no device work for a number
    if not decay_lr:
        return xp.float32(1.0)
    floor = min_lr / learning_rate
    warm = (it + 1) / (warmup_iters + 1)
    if cooldown_iters:
        decay = 1 - (1 - floor) * xp.clip((it - (lr_decay_iters - cooldown_iters)) / cooldown_iters, 0.0, 1.0)
    else:
        ratio = xp.where(it >= lr_decay_iters, 1.0, xp.clip((it - warmup_iters) / max(lr_decay_iters - warmup_iters, 1), 0, 1))
        decay = floor + 0.5 * (1.0 + xp.cos(np.pi * ratio)) * (1 - floor)
    return xp.where(it < warmup_iters, warm, decay)


def in_blocks(path, p):  # a weight matrix of a block: [layers, in, out] under 'h'
    return path[0].key == 'h' and p.ndim == 3


# AdamW's weight decay goes on matrices and embeddings, not on biases and LayerNorm gains. Under
# 'h' the leading axis stacks the layers, so a (layers, C) tensor is a stack of vectors.
decay_mask = jax.tree_util.tree_map_with_path(lambda path, p: p.ndim - (path[0].key == 'h') >= 2, params)
adamw_lr = lambda count: learning_rate * lr_factor(count)
if optimizer == 'muon':
    # Muon (optax.contrib.muon) orthogonalizes the momentum of each [in, out] matrix of each layer
    # (the layer axis is a batch axis); embeddings, biases and gains go to AdamW, as in modded-nanogpt
    weight_dims = jax.tree_util.tree_map_with_path(
        lambda path, p: optax.contrib.MuonDimensionNumbers(1, 2) if in_blocks(path, p) else None, params)
    update = optax.contrib.muon(
        lambda count: muon_lr * lr_factor(count), beta=muon_momentum, weight_decay=muon_weight_decay,
        adam_b1=beta1, adam_b2=beta2, adam_weight_decay=weight_decay, adam_learning_rate=adamw_lr,
        muon_weight_dimension_numbers=weight_dims)
else:
    update = optax.adamw(adamw_lr, b1=beta1, b2=beta2, weight_decay=weight_decay, mask=decay_mask)
tx = optax.chain(optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity(), update)
params = jax.device_put(jax.tree_util.tree_map(jnp.asarray, params), replicated)
# (evaluation alone needs no optimizer state: for GPT-2 XL that saves 12 GB)
opt_state = None if eval_only else jax.jit(tx.init, out_shardings=replicated)(params)
if ckpt is not None and not eval_only:  # the optimizer state is stored as its list of leaves
    leaves, structure = jax.tree_util.tree_flatten(opt_state)
    if len(ckpt['opt_state']) != len(leaves):
        fail(f'{ckpt_path} holds an optimizer state of another shape: resume with the settings it was trained with')
    opt_state = jax.device_put(jax.tree_util.tree_unflatten(structure, [jnp.asarray(a) for a in ckpt['opt_state']]),
                               replicated)
state = {'params': params, 'opt_state': opt_state}
ckpt = None  # free the host copy


# ----------------------------------------------------------------------------- the step
# Per-device code, pmap-style: each device sees its own [micro-steps, batch_size, T] slice,
# and lax.pmean over the 'data' axis averages gradients and losses across all devices.

def train_step(state, x, y, it):
    params = state['params']
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), it), lax.axis_index('data'))
    key = key if gptconf.dropout > 0 else None  # dropout exactly when there is a key

    def micro_step(acc, inputs):  # gradient accumulation, one micro-batch at a time
        x, y, i = inputs
        loss, grads = jax.value_and_grad(model.loss_fn)(
            params, x, y, gptconf, dtype=compute_dtype, key=None if key is None else jax.random.fold_in(key, i),
            remat=remat)
        return jax.tree_util.tree_map(jnp.add, acc, (loss, grads)), None

    zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
    n = x.shape[0]
    (loss, grads), _ = lax.scan(micro_step, zeros, (x, y, jnp.arange(n)))
    loss, grads = lax.pmean(jax.tree_util.tree_map(lambda a: a / n, (loss, grads)), 'data')
    updates, opt_state = tx.update(grads, state['opt_state'], params)
    return {'params': optax.apply_updates(params, updates), 'opt_state': opt_state}, loss


def eval_step(params, x, y):  # mean loss over [eval_iters, batch_size, T], no dropout
    losses = lax.map(lambda xy: model.loss_fn(params, *xy, gptconf, dtype=compute_dtype), (x, y))
    return lax.pmean(losses.mean(), 'data')


# check_vma=False keeps pmap's semantics: gradients stay per-device until the explicit pmean
# (with it on, JAX would sum the gradients of replicated params across devices by itself).
train_step = jax.jit(jax.shard_map(train_step, mesh=mesh, check_vma=False,
                                   in_specs=(P(), P(None, 'data'), P(None, 'data'), P()),
                                   out_specs=(P(), P())), donate_argnums=0)
eval_step = jax.jit(jax.shard_map(eval_step, mesh=mesh, check_vma=False,
                                  in_specs=(P(), P(None, 'data'), P(None, 'data')), out_specs=P()))

# the same fixed batches at every evaluation (their own stream): curves compare like with like,
# and the training data stream is untouched
eval_whole = {split: get_batch(split, np.random.default_rng(seed + 1), eval_iters, whole=True) for split in splits}
eval_batches = {split: (own_rows(x), own_rows(y)) for split, (x, y) in eval_whole.items()}
# what the evaluated targets of all processes decode to: (tokens scored, UTF-8 bytes), for bits per byte
eval_bytes = {split: (int((y != -1).sum()), int(token_bytes[y[y != -1]].sum()) if token_bytes is not None else 0)
              for split, (_, y) in eval_whole.items()}
del eval_whole


def estimate_loss():
    """(mean loss, bits per byte) of each split. Bits per byte: the summed nats over ln 2 times
    the UTF-8 bytes that the scored tokens decode to; None where the tokens' bytes are unknown."""
    out = {}
    for split, (x, y) in eval_batches.items():
        loss = float(to_host(eval_step(state['params'], *to_devices(x, y))))
        n_tokens, n_bytes = eval_bytes[split]
        out[split] = (loss, loss * n_tokens / (math.log(2) * n_bytes) if n_bytes else None)
    return out


# ----------------------------------------------------------------------------- MFU
KNOWN_PEAK_TFLOPS = {'A100': 312, 'H100': 989, 'H200': 989}  # dense bf16, per device


def device_peak_flops():
    if peak_tflops > 0:
        return peak_tflops * 1e12
    kind = jax.devices()[0].device_kind
    for name, tf in KNOWN_PEAK_TFLOPS.items():
        if name in kind:
            return tf * 1e12
    # otherwise measure: a large matmul in the compute dtype, best of ten (0.2 s on 2 cores; best
    # of three varied 2x between runs, while work dispatched before it was still running)
    a = jnp.ones((2048, 2048), compute_dtype)
    mm = jax.jit(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32))
    mm(a).block_until_ready()
    best = 1e9
    for _ in range(10):
        t0 = time.perf_counter()
        mm(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 ** 3 / best


flops_per_iter = model.flops_per_token(gptconf) * tokens_per_iter
jax.block_until_ready(state)  # nothing else running while the peak is measured
peak_flops = device_peak_flops() * (n_processes if on_cpu else n_devices)  # a CPU's devices share its cores

# ----------------------------------------------------------------------------- checkpoints and log
saved = None  # (iter, val loss) of the checkpoint this run wrote last


def on_disk():  # what the checkpoint file holds now, for messages that must tell the truth
    if saved is not None:
        return f'{ckpt_path} holds the model of iter {saved[0]}' + (f' (val loss {saved[1]:.4f})' if saved[1] else '')
    return f'this run wrote no checkpoint' + (f'; {ckpt_path} is as it was' if os.path.exists(ckpt_path) else '')


def save_checkpoint(val_loss):
    """Everything needed to continue exactly: weights, optimizer state, counters, the data
    stream's position. Only process 0 writes."""
    global saved
    if not master:
        return
    host = to_host(state)
    try:
        common.save_pickle(ckpt_path, {
            'params': host['params'],
            'opt_state': jax.tree_util.tree_leaves(host['opt_state']),
            'model_args': model_args,
            'iter_num': iter_num,
            'best_val_loss': best_val_loss,
            'config': {**config, 'data_dir': os.path.abspath(data_dir)},
            'tokenizer': {k: meta[k] for k in ('vocab_size', 'stoi', 'itos', 'tokenizer') if k in meta} or {'tokenizer': 'gpt2'},
            'data_rng_state': data_state,
        })
    except OSError as e:
        fail(f'could not write {ckpt_path} ({e.strerror}); {on_disk()}')
    saved = (iter_num, val_loss)
    log(f'saved checkpoint to {ckpt_path}')


def write_log(record):
    """One JSON line in log.jsonl, written whole or not at all (a full disk leaves no half line)."""
    if not master:
        return
    try:
        common.append_line(log_fd, json.dumps(record) + '\n')
    except OSError as e:
        fail(f'could not write {out_dir}/log.jsonl ({e.strerror}); {on_disk()}')
    if wandb_log:
        wandb.log(record)


def duration(seconds):
    seconds = round(seconds)
    return f'{seconds // 3600}h{seconds // 60 % 60:02d}m' if seconds >= 3600 else \
        f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


# Ctrl-C: finish the current step, save, exit (the step's buffers are donated, so a
# KeyboardInterrupt in the middle of one could leave nothing valid to save).
interrupted = False


def on_sigint(signum, frame):
    global interrupted
    if interrupted:
        raise KeyboardInterrupt
    interrupted = True
    log('\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)')


signal.signal(signal.SIGINT, on_sigint)

# ----------------------------------------------------------------------------- the loop
if wandb_log and master:
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)

data_rng = np.random.default_rng(seed)
if data_rng_state is not None:  # resuming: continue the stream where the checkpoint left it
    data_rng.bit_generator.state = data_rng_state
data_state = data_rng.bit_generator.state  # the stream's position before the next batch
x, y = to_devices(*get_batch('train', data_rng, gradient_accumulation_steps))

def report(it, loss):
    """The progress line of iteration it. Reading its loss waits for that step: the loop calls
    this once the next step is on its way, so the device does not wait for the host's printing."""
    global t0, last_it, step_dt
    loss = float(to_host(loss))  # the one host sync per log line
    t1 = time.time()
    dt, t0, steps, last_it = (t1 - t0) / (it - last_it), t1, it - last_it, it
    if not math.isfinite(loss):
        fail(f'loss is {loss} at iter {it}; stopping without saving: {on_disk()}. Lower learning_rate or check the data')
    warm = it - steps > start_iter  # the first steps of a run include compilation
    if warm:
        step_dt = dt if step_dt is None else 0.9 * step_dt + 0.1 * dt
    evals_left = max_iters // eval_interval - it // eval_interval + (max_iters % eval_interval > 0)
    eta = f', ETA {duration((max_iters - it) * step_dt + evals_left * eval_dt)}' if step_dt else ''
    lr = float(lr_factor(it - 1)) * learning_rate
    mfu = flops_per_iter / dt / peak_flops
    log(f'iter {it}/{max_iters}: loss {loss:.4f}, lr {lr:.2e}, {dt * 1000:.1f} ms/iter, {tokens_per_iter / dt:,.0f} tok/s'
        + (f', mfu {mfu * 100:.1f}%{eta}' if warm else ' (includes compilation)'))
    write_log({'iter': it, 'loss': loss, 'lr': lr, 'ms': dt * 1000, 'tokens_per_s': tokens_per_iter / dt, 'mfu': mfu,
               'elapsed': time.time() - fastmalloc.START})


# The training step compiles in the background while the first evaluation runs (and compiles):
# on two cores the first step starts ~1.5 s sooner.
compiling = None if eval_only else \
    ThreadPoolExecutor(1).submit(lambda: train_step.lower(state, x, y, jnp.int32(iter_num)).compile())
t_start = t0 = time.time()
start_iter = last_it = iter_num
eval_seconds, eval_dt, step_dt, pending = 0.0, 0.0, None, None  # pending: (iter, loss) still to report
best_iter = iter_num if init_from == 'resume' else None
while True:
    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only:
        if pending:
            report(*pending)
            pending = None
        t_eval = time.time()
        losses = estimate_loss()
        (train_loss, train_bpb), (val_loss, val_bpb) = losses['train'], losses['val']
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            fail(f'non-finite loss at iter {iter_num} (train {train_loss}, val {val_loss}); stopping: '
                 f'{on_disk()}. Lower learning_rate or check the data')
        if val_loss > best_val_loss + 1.0:  # finite, but far above the best: the run is diverging
            fail(f'val loss {val_loss:.4f} at iter {iter_num} is far above the best, {best_val_loss:.4f}: the run '
                 f'diverges; stopping without saving over the checkpoint: {on_disk()}. Lower learning_rate')
        improved = val_loss < best_val_loss
        if improved:
            best_val_loss, best_iter = val_loss, iter_num
        bpb = f', val bpb {val_bpb:.4f}' if val_bpb else ''
        log(f"step {iter_num}/{max_iters}: train loss {train_loss:.4f}, val loss {val_loss:.4f}{bpb}, "
            f"val perplexity {math.exp(min(val_loss, 50)):.2f}, {duration(time.time() - fastmalloc.START)} since start")
        write_log({'iter': iter_num, 'train_loss': train_loss, 'val_loss': val_loss, 'train_bpb': train_bpb,
                   'val_bpb': val_bpb, 'train_time': t_eval - t_start - eval_seconds, 'wall_time': t_eval - t_start,
                   'elapsed': time.time() - fastmalloc.START})
        if eval_only:
            break
        if iter_num > start_iter and (improved or always_save_checkpoint):
            save_checkpoint(val_loss)
        eval_dt = time.time() - t_eval
        eval_seconds += eval_dt
        t0 += eval_dt  # step times leave evaluation out
    if iter_num >= max_iters:
        break

    if compiling is not None:
        train_step, compiling = compiling.result(), None
    state, loss = train_step(state, x, y, jnp.int32(iter_num))
    if pending:  # the step before: reported while the device works on this one
        report(*pending)
        pending = None
    # the next batch is read while the device computes this step (dispatch is asynchronous)
    data_state = data_rng.bit_generator.state
    x, y = to_devices(*get_batch('train', data_rng, gradient_accumulation_steps))
    iter_num += 1
    if iter_num % log_interval == 0 or iter_num == max_iters:
        pending = (iter_num, loss)
    if interrupted:
        if pending:
            report(*pending)
        save_checkpoint(None)
        sys.exit(130)

# ----------------------------------------------------------------------------- summary
if master and not eval_only:
    total = time.time() - fastmalloc.START
    tokens = (iter_num - start_iter) * tokens_per_iter
    log(f'\ndone: {iter_num - start_iter:,} iterations ({tokens / 1e6:,.1f}M tokens) in {duration(total)} '
        f'({duration(eval_seconds)} of it evaluating)')
    log(f'best val loss {best_val_loss:.4f}' + (f' at iter {best_iter}' if best_iter is not None else '')
        + (f'; {on_disk()}' if saved or os.path.exists(ckpt_path) else ''))
    plot = plot_losses(out_dir)
    log(f'loss curves: {plot}' if plot else f'loss curves: pip install matplotlib, then python plot.py {out_dir}')
    log(f'sample from it: python sample.py --out_dir={out_dir}')
