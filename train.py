"""Train a GPT: one data-parallel loop from a laptop CPU to many GPUs on many hosts.

    python train.py config/train_char.py                      # char-level Shakespeare on the CPU
    python train.py config/train_gpt2.py --batch_size=8       # GPT-2 124M on OpenWebText

Every device runs the same per-device step on its own slice of the batch and averages
gradients with lax.pmean (pmap-style code, written with shard_map under jit). With
jax.distributed (set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or run under
Slurm) the same loop spans hosts. Checkpoints (out_dir/ckpt.pkl) resume exactly.
"""
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict

import numpy as np

import fastmalloc

fastmalloc.reexec_with_tcmalloc()  # much faster steps on the CPU, when tcmalloc is installed

# ----------------------------------------------------------------------------- settings
# I/O
out_dir = 'out'
eval_interval = 2000
log_interval = 1
eval_iters = 200
eval_only = False  # evaluate once and exit
always_save_checkpoint = True  # else only when val loss improves
init_from = 'scratch'  # 'scratch', 'resume' or 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'
# wandb logging
wandb_log = False
wandb_project = 'owt'
wandb_run_name = 'gpt2'
# data
dataset = 'openwebtext'
gradient_accumulation_steps = 40  # micro-batches per optimizer step
batch_size = 12  # per device, per micro-batch
block_size = 1024
# model
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0  # 0 for pretraining, try 0.1+ for finetuning
bias = True
# AdamW
learning_rate = 6e-4
max_iters = 600000
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0  # clip gradients at this global norm, 0 to disable
# learning rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True
warmup_iters = 2000
lr_decay_iters = 600000  # ~= max_iters per Chinchilla
min_lr = 6e-5  # ~= learning_rate / 10 per Chinchilla
# system
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': model.default_dtype()
remat = False  # recompute each block's activations in the backward pass: less memory, ~1/3 more compute
peak_tflops = 0.0  # per-device peak for MFU; 0 = known GPU table, or measured on a CPU
seed = 1337
# -----------------------------------------------------------------------------
import configurator  # noqa: E402  (settings above are overridden from the command line)

config = configurator.configure(globals())

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import checkpoint  # noqa: E402
import model  # noqa: E402
from model import GPTConfig  # noqa: E402


def fail(msg):
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


# ----------------------------------------------------------------------------- devices
# Several hosts: JAX's own coordinator variables, or a cluster JAX detects (Slurm, Open MPI).
if os.environ.get('JAX_COORDINATOR_ADDRESS') or int(os.environ.get('SLURM_NTASKS', '1')) > 1 \
        or int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1:
    env_int = lambda name: int(os.environ[name]) if name in os.environ else None
    jax.distributed.initialize(num_processes=env_int('JAX_NUM_PROCESSES'),
                               process_id=env_int('JAX_PROCESS_ID'))
master = jax.process_index() == 0
n_devices, n_processes = jax.device_count(), jax.process_count()
on_gpu = jax.default_backend() == 'gpu'
if dtype == 'auto':
    dtype = model.default_dtype()
if dtype not in ('float32', 'bfloat16', 'float16'):
    fail(f"dtype must be 'float32', 'bfloat16' or 'float16', not {dtype!r}")
if not 0 <= dropout < 1:
    fail(f'dropout must be at least 0 and below 1, not {dropout}')
compute_dtype = jnp.dtype(dtype)
log = print if master else (lambda *a, **k: None)

# One 1-D mesh over every device of every process. Params and optimizer state are
# replicated (P()); batches are split along their batch axis ('data').
mesh = jax.make_mesh((n_devices,), ('data',))
replicated = NamedSharding(mesh, P())
batch_sharding = NamedSharding(mesh, P(None, 'data'))  # [micro-steps, batch, time]

local_batch = batch_size * jax.local_device_count()  # rows this process feeds per micro-step
global_batch = batch_size * n_devices
log(f'devices: {n_devices} ({jax.devices()[0].device_kind}) on {n_processes} process(es); '
    f'compute dtype {dtype}')


def to_host(tree):
    # replicated arrays: this process's own copy (works on one host and on many)
    return jax.tree_util.tree_map(lambda a: np.asarray(a.addressable_data(0)), tree)


# ----------------------------------------------------------------------------- data
data_dir = os.path.join('data', dataset)
for split in ('train', 'val'):
    if not os.path.isfile(os.path.join(data_dir, f'{split}.bin')):
        fail(f'{data_dir}/{split}.bin not found: prepare the dataset first '
             f'(python prepare_char.py for shakespeare_char, python prepare_owt.py for openwebtext)')
meta = {}
if os.path.isfile(os.path.join(data_dir, 'meta.pkl')):
    meta = checkpoint.load(os.path.join(data_dir, 'meta.pkl'))
# Datasets of fixed-length examples (meta example_len) are sampled from example boundaries,
# and the first prompt_len tokens of each example are given, not scored.
example_len, prompt_len = meta.get('example_len'), meta.get('prompt_len', 0)
if example_len and example_len - 1 > block_size:
    fail(f'{dataset} has examples of {example_len} tokens: block_size must be at least {example_len - 1}')
window = example_len - 1 if example_len else block_size
tokens_per_iter = gradient_accumulation_steps * global_batch * window
log(f'tokens per iteration: {tokens_per_iter:,} = batch {batch_size} x {n_devices // n_processes} '
    f'devices x {n_processes} processes x {gradient_accumulation_steps} accumulation steps '
    f'x {window} tokens')


def get_batch(split, rng, n_micro):
    """Random windows -> x, y of [n_micro, local_batch, window], int32, for this process.
    The window offsets are drawn for the whole global batch from one stream shared by all
    processes, and each process reads its own slice: the data a step sees does not depend
    on how the batch is spread over devices and hosts."""
    data = np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')
    if example_len:
        ix = rng.integers(len(data) // example_len, size=(n_micro, global_batch)) * example_len
    else:
        ix = rng.integers(len(data) - window, size=(n_micro, global_batch))
    mine = jax.process_index() * local_batch
    ix = ix[:, mine:mine + local_batch]
    xy = np.stack([data[i:i + window + 1] for i in ix.ravel()]).astype(np.int32)
    xy = xy.reshape(n_micro, local_batch, window + 1)
    x, y = xy[..., :-1], xy[..., 1:].copy()
    if prompt_len > 1:
        y[..., :prompt_len - 1] = -1  # predictions of prompt tokens are not scored
    return (jax.make_array_from_process_local_data(batch_sharding, x),
            jax.make_array_from_process_local_data(batch_sharding, y))


# ----------------------------------------------------------------------------- model
iter_num, best_val_loss = 0, 1e9
vocab_size = meta.get('vocab_size', 50304)  # GPT-2's 50257 padded up to a multiple of 64
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                  bias=bias, vocab_size=vocab_size, dropout=dropout)
ckpt_path = os.path.join(out_dir, 'ckpt.pkl')
ckpt, data_rng_state = None, None
if init_from == 'scratch':
    log(f'initializing a new model from scratch (vocab_size {vocab_size})')
    gptconf = GPTConfig(**model_args)
    params = model.init_params(gptconf, jax.random.key(seed))
elif init_from == 'resume':
    log(f'resuming training from {ckpt_path}')
    try:
        ckpt = checkpoint.load(ckpt_path)
        gptconf = GPTConfig(**ckpt['model_args'])
        params = ckpt['params']
        data_rng_state = ckpt['data_rng_state']
    except (checkpoint.CheckpointError, KeyError, TypeError) as e:
        fail(f'cannot resume: {e}')
    iter_num, best_val_loss = ckpt['iter_num'], ckpt['best_val_loss']
elif init_from.startswith('gpt2'):
    log(f'initializing from OpenAI GPT-2 weights: {init_from}')
    try:
        params, gptconf = model.from_pretrained(init_from)
    except (OSError, ValueError, RuntimeError) as e:
        fail(str(e))
    gptconf = GPTConfig(**{**asdict(gptconf), 'dropout': dropout})  # only dropout may change
    if block_size < gptconf.block_size:  # model surgery: keep the first block_size positions
        params['wpe'] = params['wpe'][:block_size]
        gptconf = GPTConfig(**{**asdict(gptconf), 'block_size': block_size})
else:
    fail(f"init_from must be 'scratch', 'resume' or one of {', '.join(model.GPT2_SIZES)}")
model_args = asdict(gptconf)
if block_size > gptconf.block_size:
    fail(f'block_size {block_size} is larger than the model\'s {gptconf.block_size}')
log(f'number of parameters: {model.num_params(params) / 1e6:.2f}M')

# ----------------------------------------------------------------------------- optimizer


def get_lr(it):
    """Linear warmup, cosine decay to min_lr at lr_decay_iters, then min_lr (nanoGPT's get_lr)."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def lr_schedule(count):  # the same schedule, traced, from the optimizer's own step count
    if not decay_lr:
        return jnp.float32(learning_rate)
    warm = learning_rate * (count + 1) / (warmup_iters + 1)
    ratio = jnp.clip((count - warmup_iters) / max(lr_decay_iters - warmup_iters, 1), 0.0, 1.0)
    cos = min_lr + 0.5 * (1.0 + jnp.cos(jnp.pi * ratio)) * (learning_rate - min_lr)
    return jnp.where(count < warmup_iters, warm, cos)


# Weight decay on matrices and embeddings, not on biases and LayerNorm gains. Under 'h' the
# leading axis stacks the layers, so a (layers, C) tensor is a stack of vectors.
decay_mask = jax.tree_util.tree_map_with_path(
    lambda path, p: p.ndim - (path[0].key == 'h') >= 2, params)
tx = optax.chain(
    optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity(),
    optax.adamw(lr_schedule, b1=beta1, b2=beta2, weight_decay=weight_decay, mask=decay_mask),
)
params = jax.device_put(jax.tree_util.tree_map(jnp.asarray, params), replicated)
# (evaluation alone needs no optimizer state: for GPT-2 XL that saves 12 GB)
opt_state = None if eval_only else jax.jit(tx.init, out_shardings=replicated)(params)
if ckpt is not None and not eval_only:  # the optimizer state is stored as its list of leaves
    opt_state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(opt_state),
                                             [jnp.asarray(a) for a in ckpt['opt_state']])
    opt_state = jax.device_put(opt_state, replicated)
state = {'params': params, 'opt_state': opt_state}
ckpt = None  # free the host copy


# ----------------------------------------------------------------------------- the step
# Per-device code, pmap-style: each device sees its own [micro-steps, batch_size, T] slice,
# and lax.pmean over the 'data' axis averages gradients and losses across all devices.

def train_step(state, x, y, it):
    params = state['params']
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), it), lax.axis_index('data'))

    def micro_step(acc, inputs):  # gradient accumulation, one micro-batch at a time
        x, y, i = inputs
        loss, grads = jax.value_and_grad(model.loss_fn)(
            params, x, y, gptconf, train=True, rng=jax.random.fold_in(key, i), dtype=compute_dtype,
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


def estimate_loss():
    # the same fixed batches at every evaluation (own stream): curves compare like with like,
    # and the training data stream is untouched
    out = {}
    for split in ('train', 'val'):
        x, y = get_batch(split, np.random.default_rng(seed + 1), eval_iters)
        out[split] = float(to_host(eval_step(state['params'], x, y)))
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
    # otherwise measure: the best large-matmul throughput in the compute dtype
    a = jnp.ones((2048, 2048), compute_dtype)
    mm = jax.jit(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32))
    mm(a).block_until_ready()
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        mm(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048 ** 3 / best


flops_per_iter = model.flops_per_token(gptconf) * tokens_per_iter
peak_flops = device_peak_flops() * n_devices
log(f'peak for MFU: {peak_flops / 1e12:.2f} TFLOP/s over {n_devices} device(s)')


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint():
    """Everything needed to continue exactly: weights, optimizer state, counters, the data
    stream's position. Only process 0 writes."""
    if not master:
        return
    host = to_host(state)
    checkpoint.save(ckpt_path, {
        'params': host['params'],
        'opt_state': jax.tree_util.tree_leaves(host['opt_state']),
        'model_args': model_args,
        'iter_num': iter_num,
        'best_val_loss': best_val_loss,
        'config': config,
        'data_rng_state': data_state,
    })
    log(f'saved checkpoint to {ckpt_path}')


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
if master:
    os.makedirs(out_dir, exist_ok=True)
    log_file = open(os.path.join(out_dir, 'log.jsonl'), 'a')
if wandb_log and master:
    import wandb
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)

data_rng = np.random.default_rng(seed)
if data_rng_state is not None:  # resuming: continue the stream where the checkpoint left it
    data_rng.bit_generator.state = data_rng_state
data_state = data_rng.bit_generator.state  # the stream's position before the next batch
x, y = get_batch('train', data_rng, gradient_accumulation_steps)


def write_log(record):
    log_file.write(json.dumps(record) + '\n')
    log_file.flush()
    if wandb_log:
        wandb.log(record)


t_start = t0 = time.time()
eval_seconds = 0.0  # time spent evaluating and saving, left out of training time
local_iter = 0
while True:
    if iter_num % eval_interval == 0 or eval_only:
        t_eval = time.time()
        losses = estimate_loss()
        if not all(map(math.isfinite, losses.values())):
            fail(f'non-finite loss at iter {iter_num} ({losses}); stopping. The last good '
                 f'checkpoint in {out_dir} is untouched: lower learning_rate or check the data')
        train_time = t_eval - t_start - eval_seconds
        log(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
            f"val perplexity {math.exp(min(losses['val'], 50)):.2f}, {train_time:.1f}s of training")
        if master:
            write_log({'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'],
                       'train_time': train_time, 'wall_time': t_eval - t_start})
        if eval_only:
            break
        if losses['val'] < best_val_loss or always_save_checkpoint:
            best_val_loss = min(best_val_loss, losses['val'])
            if local_iter > 0:  # not at the start: nothing new to save
                save_checkpoint()
        eval_dt = time.time() - t_eval
        eval_seconds += eval_dt
        t0 += eval_dt  # step times leave evaluation out
    if iter_num >= max_iters:
        break

    state, loss = train_step(state, x, y, jnp.int32(iter_num))
    # the next batch is read while the device computes this step (dispatch is asynchronous)
    data_state = data_rng.bit_generator.state
    x, y = get_batch('train', data_rng, gradient_accumulation_steps)
    iter_num += 1
    local_iter += 1

    if iter_num % log_interval == 0:
        loss = float(to_host(loss))  # the one host sync per log line
        t1 = time.time()
        dt, t0 = (t1 - t0) / log_interval, t1
        if not math.isfinite(loss):
            fail(f'loss is {loss} at iter {iter_num}; stopping without saving. The last good '
                 f'checkpoint in {out_dir} is untouched: lower learning_rate or check the data')
        mfu = flops_per_iter / dt / peak_flops
        warm = local_iter > log_interval  # the first interval includes compilation
        log(f'iter {iter_num}: loss {loss:.4f}, lr {get_lr(iter_num - 1):.2e}, '
            f'time {dt * 1000:.2f}ms, {tokens_per_iter / dt:,.0f} tok/s'
            + (f', mfu {mfu * 100:.2f}%' if warm else ' (includes compilation)'))
        if master:
            write_log({'iter': iter_num, 'loss': loss, 'lr': get_lr(iter_num - 1), 'ms': dt * 1000,
                       'tokens_per_s': tokens_per_iter / dt, 'mfu': mfu})
    if interrupted:
        save_checkpoint()
        sys.exit(130)
