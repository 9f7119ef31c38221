"""Train a GPT: one data-parallel loop from a laptop CPU to many GPUs on many hosts.

    python train.py config/train_char.py                      # char-level Shakespeare on the CPU
    python train.py config/train_gpt2.py --batch_size=8       # GPT-2 124M on OpenWebText

Every device runs the same per-device step on its own slice of the batch and averages
gradients with lax.pmean (pmap-style code, written with shard_map under jit). With
jax.distributed (set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or run under
Slurm) the same loop spans hosts. Checkpoints (out_dir/ckpt.pkl) resume exactly.
"""
import fastmalloc  # first: restarts this process with a faster allocator, when one is installed
import common

common.exit_on_ctrl_c()  # until the loop runs: no traceback
common.errors_as_one_line()  # a UserError anywhere below: one `error:` line, exit status 1

import math
import os
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

import checkpoint
import configurator
import datafiles
import devices
import hellaswag
import model
import tokenizer
from common import UserError
from model import GPTConfig
from plot import plot_summary
from progress import Progress, import_wandb

# ----------------------------------------------------------------------------- settings
# I/O
out_dir = 'out'  # where ckpt.pkl, log.jsonl and loss.png go
eval_interval = 2000  # evaluate every this many iterations (and at the end)
log_interval = 1  # print a progress line every this many iterations
eval_iters = 200  # batches per evaluation, of train and of val
eval_only = False  # evaluate once and exit
hellaswag_examples = 0  # add HellaSwag's acc_norm on its first N validation examples (data/hellaswag, downloaded once) to each evaluation
always_save_checkpoint = True  # save at every evaluation; False: only when val loss improves
init_from = 'scratch'  # 'scratch', 'resume' (out_dir/ckpt.pkl), 'gpt2' .. 'gpt2-xl', or a GPT-2 folder
overwrite = False  # let a run that does not resume replace a checkpoint already in out_dir
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
ema_decay = 0.0  # >0: evaluate, keep and save an exponential moving average of the weights (e.g. 0.995); 0: the weights as trained
# system
dtype = 'auto'  # 'float32', 'bfloat16', 'float16'; 'auto': bfloat16 on GPUs, TPUs and CPUs with bf16 instructions
cpu_devices = 0  # CPU: JAX devices to split each process's batch over (0: one per core, up to 8)
remat = False  # recompute each block's activations in the backward pass: less memory, ~1/3 more compute
peak_tflops = 0.0  # per-device peak for MFU; 0: the data-sheet table (none on a CPU)
seed = 1337
# -----------------------------------------------------------------------------
config = configurator.configure(globals())  # config files and --key=value, each value checked

# ----------------------------------------------------------------------------- checks across settings
configurator.check_across(config)  # n_embd over n_head; warmup, cooldown and decay in that order
checkpoint.check_init_from(init_from, ('scratch', 'resume'))
wandb = import_wandb() if wandb_log else None  # Weights & Biases, when asked for

# ----------------------------------------------------------------------------- devices
devices.setup(batch_size, cpu_devices)  # a CPU's cores as devices, the compilation cache, several hosts
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
    raise UserError(f'batch_size {batch_size} does not split evenly over the {jax.local_device_count()} '
                    f'CPU devices of a process: make it a multiple, or set cpu_devices')
dtype, why = devices.compute_dtype(dtype)
compute_dtype = jnp.dtype(dtype)
log(f'devices: {n_devices} ({jax.devices()[0].device_kind}) on {n_processes} process(es); '
    f'compute dtype {dtype} ({why}); memory allocator {fastmalloc.ALLOCATOR}')


# ----------------------------------------------------------------------------- the run's folder
out_dir = common.find(out_dir)
ckpt_path = os.path.join(out_dir, 'ckpt.pkl')
run = checkpoint.RunDir(out_dir) if master else None  # locked by this run until it ends, however it ends
on_disk = run.on_disk if master else (lambda: '')
checkpoint.would_replace(ckpt_path, init_from, overwrite, eval_only)
ckpt = None
if init_from == 'resume':  # the model is the checkpoint's: settings given for this run must agree with it
    ckpt, _ = checkpoint.load_for_resume(out_dir)
    checkpoint.resume_settings(ckpt, config, configurator.overridden(globals()), optimizer, ckpt_path)
    n_layer, n_head, n_embd, block_size, bias = (config[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias'))

# ----------------------------------------------------------------------------- data
data_dir = common.find(os.path.join('data', dataset))
meta = datafiles.check_dataset(data_dir)
identity = datafiles.identity(data_dir, meta)  # recorded in the checkpoint: a resume must use the same data
vocab_size = tokenizer.model_vocab_size(meta)
token_bytes = tokenizer.token_byte_lengths(meta)  # UTF-8 bytes each token id decodes to, for bits per byte
data_vocab = vocab_size if token_bytes is None else min(vocab_size, len(token_bytes))  # ids the data may hold
# Datasets of fixed-length examples (meta example_len) are sampled from example boundaries,
# and the first prompt_len tokens of each example are given, not scored.
example_len, prompt_len = meta.get('example_len'), meta.get('prompt_len', 0)
if example_len and example_len - 1 > block_size:
    raise UserError(f'{dataset} has examples of {example_len} tokens: block_size must be at least {example_len - 1}')
seq_len = example_len - 1 if example_len else block_size  # tokens per training sequence
tokens_per_iter = gradient_accumulation_steps * global_batch * seq_len
splits = datafiles.open_splits(data_dir, seq_len + 1)  # {'train': memmap, 'val': memmap} of uint16 ids
log(f'tokens per iteration: {tokens_per_iter:,} = batch {batch_size} x '
    + (f'{n_processes} process(es), each split over {n_devices // n_processes} CPU device(s)' if on_cpu else
       f'{n_devices // n_processes} devices x {n_processes} process(es)')
    + f' x {gradient_accumulation_steps} accumulation steps x {seq_len} tokens')
if not eval_only and init_from == 'scratch' and tokens_per_iter > len(splits['train']) / 10:
    log(f'warning: {tokens_per_iter:,} tokens per iteration is large for {len(splits["train"]):,} training tokens '
        f'(GPT-2-sized defaults?); config/train_char.py is a starting point for small data')
if not eval_only and decay_lr and 0 < max_iters <= warmup_iters:
    log(f'warning: the run ends within its warmup ({max_iters} of {warmup_iters} iterations); lower warmup_iters')


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
    if xy.max() >= data_vocab:  # past the model's token table (read without a word) or the tokenizer's
        raise UserError(f'{data_dir}/{split}.bin holds token id {xy.max()}, past the vocabulary of {data_vocab} '
                        f'in its meta.pkl: prepare the dataset again')
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
iter_num, best_val_loss, best_iter, data_rng_state, elapsed_before, ema = 0, 1e9, None, None, 0.0, None
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                  vocab_size=vocab_size, dropout=dropout)
if init_from == 'scratch':
    log(f'initializing a new model from scratch (vocab_size {vocab_size})')
    gptconf, params = GPTConfig(**model_args), None  # drawn once it is known to fit
elif init_from == 'resume':
    log(f'resuming training from {ckpt_path}')
    checkpoint.check_same_dataset(ckpt, identity, vocab_size, data_dir, ckpt_path)
    gptconf = GPTConfig(**{**ckpt['model_args'], 'dropout': dropout})  # only dropout may change
    params, data_rng_state, iter_num, best_val_loss = (ckpt[k] for k in ('params', 'data_rng_state', 'iter_num',
                                                                          'best_val_loss'))
    if 'train_params' in ckpt and not eval_only:  # saved with ema_decay: see save_checkpoint
        ema, params = params, ckpt['train_params']
    best_iter, elapsed_before = ckpt.get('best_iter', iter_num), ckpt.get('elapsed', 0.0)
else:  # a GPT-2 size or folder
    log(f'initializing from OpenAI GPT-2 weights: {init_from}')
    params, gptconf = checkpoint.gpt2_to_finetune(init_from, meta, data_dir, block_size, dropout)
model_args = asdict(gptconf)
if block_size > gptconf.block_size:
    raise UserError(f"block_size {block_size} is larger than the model's {gptconf.block_size}")
devices.check_fits(devices.training_bytes(gptconf, local_batch * seq_len, gradient_accumulation_steps, eval_iters,
                                          compute_dtype, remat, eval_only), jax.local_devices()[0], 'this run',
                   'lower batch_size, gradient_accumulation_steps, eval_iters, block_size or the model\'s size')
if params is None:
    params = model.init_params(gptconf, jax.random.key(seed))
log(f'number of parameters: {model.num_params(params) / 1e6:.2f}M')
# the examples are read and tokenized now: a vocabulary that cannot write them stops the run here
score_hellaswag = hellaswag.evaluator(hellaswag_examples, gptconf, tokenizer.from_meta(meta, f'{data_dir}/meta.pkl'),
                                      compute_dtype, download=n_processes == 1) if hellaswag_examples else None


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


# AdamW's weight decay goes on matrices and embeddings, not on biases and LayerNorm gains. Under
# 'h' the leading axis stacks the layers, so a (layers, C) tensor is a stack of vectors.
decay_mask = jax.tree_util.tree_map_with_path(lambda path, p: p.ndim - (path[0].key == 'h') >= 2, params)
adamw_lr = lambda count: learning_rate * lr_factor(count)
if optimizer == 'muon':
    # Muon (optax.contrib.muon) orthogonalizes the momentum of each [in, out] matrix of each layer
    # (the layer axis is a batch axis); embeddings, biases and gains go to AdamW, as in modded-nanogpt
    weight_dims = jax.tree_util.tree_map_with_path(
        lambda path, p: optax.contrib.MuonDimensionNumbers(1, 2) if path[0].key == 'h' and p.ndim == 3 else None,
        params)
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
    checkpoint.check_opt_state(ckpt['opt_state'], leaves, ckpt_path)
    opt_state = jax.device_put(jax.tree_util.tree_unflatten(structure, [jnp.asarray(a) for a in ckpt['opt_state']]),
                               replicated)
state = {'params': params, 'opt_state': opt_state}
if ema_decay > 0:  # the average starts as the weights, or is the checkpoint's when resuming
    state['ema'] = jax.device_put(jax.tree_util.tree_map(jnp.array, params if ema is None else ema), replicated)
ckpt = ema = None  # free the host copies


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
    new = {'params': optax.apply_updates(params, updates), 'opt_state': opt_state}
    if 'ema' in state:  # the average's decay warms up, so early weights fade fast: (1 + it) / (10 + it)
        d = jnp.minimum(ema_decay, (1.0 + it) / (10.0 + it))
        new['ema'] = jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * p, state['ema'], new['params'])
    return new, loss


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

# the same fixed batches at every evaluation, from a stream of their own: curves compare like with like
eval_whole = {split: get_batch(split, np.random.default_rng(seed + 1), eval_iters, whole=True) for split in splits}
eval_batches = {split: (own_rows(x), own_rows(y)) for split, (x, y) in eval_whole.items()}
# what the evaluated targets of all processes decode to: (tokens scored, UTF-8 bytes), for bits per byte
eval_bytes = {split: (int((y != -1).sum()), int(token_bytes[y[y != -1]].sum()) if token_bytes is not None else 0)
              for split, (_, y) in eval_whole.items()}
del eval_whole


def estimate_loss():
    """(mean loss, bits per byte) of each split. Bits per byte: the summed nats over ln 2 times
    the UTF-8 bytes that the scored tokens decode to; None where the tokens' bytes are unknown.
    With ema_decay, of the average; the weights as trained get val_loss_raw beside it."""
    weights = state.get('ema', state['params'])
    out = {}
    for split, (x, y) in eval_batches.items():
        loss = float(devices.to_host(eval_step(weights, *to_devices(x, y))))
        n_tokens, n_bytes = eval_bytes[split]
        out[split] = (loss, loss * n_tokens / (math.log(2) * n_bytes) if n_bytes else None)
    if 'ema' in state:
        out['val_loss_raw'] = float(devices.to_host(eval_step(state['params'], *to_devices(*eval_batches['val']))))
    if score_hellaswag:  # on this process's copy of the weights
        out['hellaswag'] = score_hellaswag(devices.to_host(weights))
    return out


def save_checkpoint(val_loss):
    """Everything needed to continue exactly: weights, optimizer state, counters, the data
    stream's position. Only process 0 writes. params are the weights evaluated, the ones sample.py
    and export.py read: with ema_decay the average, and the weights as trained go in train_params."""
    if master:
        host = devices.to_host(state)
        trained = {'params': host['ema'], 'train_params': host['params']} if 'ema' in host else {'params': host['params']}
        run.save({**trained, 'opt_state': jax.tree_util.tree_leaves(host['opt_state']),
                  'model_args': model_args, 'iter_num': iter_num, 'best_val_loss': best_val_loss,
                  'best_iter': best_iter, 'elapsed': progress.elapsed(), 'data_rng_state': data_state,
                  'config': {**config, 'data_dir': os.path.abspath(data_dir)}, 'dataset': identity,
                  'tokenizer': {k: meta[k] for k in ('vocab_size', 'stoi', 'itos', 'tokenizer') if k in meta}
                  or {'tokenizer': 'gpt2'}}, val_loss)
        log(f'saved checkpoint to {ckpt_path}')


# ----------------------------------------------------------------------------- the loop
if wandb and master:
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)
data_rng = np.random.default_rng(seed)
if data_rng_state is not None:  # resuming: continue the stream where the checkpoint left it
    data_rng.bit_generator.state = data_rng_state
data_state = data_rng.bit_generator.state  # the stream's position before the next batch
x, y = to_devices(*get_batch('train', data_rng, gradient_accumulation_steps))
if not eval_only and iter_num < max_iters:  # compiled in another thread while the first evaluation runs
    train_step = devices.compile_in_background(train_step, state, x, y, jnp.int32(iter_num))
jax.block_until_ready(state)  # nothing else running while a peak is measured
peak, peak_source = devices.peak_flops(compute_dtype, peak_tflops)  # of all devices; None on a CPU
if peak_source:
    log(f'mfu against {peak_source}')
progress = Progress(out_dir, master, max_iters=max_iters, eval_interval=eval_interval, log_interval=log_interval,
                    start_iter=iter_num, tokens_per_iter=tokens_per_iter, on_disk=on_disk, elapsed_before=elapsed_before,
                    flops_per_iter=model.flops_per_token(gptconf) * tokens_per_iter, peak_flops=peak,
                    lr_at=lambda it: float(lr_factor(it)) * learning_rate, wandb=wandb)
start_iter = iter_num
while True:
    if iter_num % eval_interval == 0 or iter_num == max_iters or eval_only or progress.interrupted:
        losses = progress.evaluate(iter_num, estimate_loss)
        if eval_only:
            break
        val_loss = losses['val'][0]
        checkpoint.check_sane(val_loss, best_val_loss, iter_num, on_disk)  # a diverging run stops unsaved
        if val_loss < best_val_loss:
            best_val_loss, best_iter = val_loss, iter_num
        if iter_num > start_iter and (best_iter == iter_num or always_save_checkpoint):
            save_checkpoint(val_loss)
        if progress.interrupted:
            progress.stop_interrupted(out_dir)
    if iter_num >= max_iters:
        break
    state, loss = train_step(state, x, y, jnp.int32(iter_num))
    # the next batch is read while the device computes this step (dispatch is asynchronous)
    data_state = data_rng.bit_generator.state
    x, y = to_devices(*get_batch('train', data_rng, gradient_accumulation_steps))
    iter_num += 1
    progress.step(iter_num, loss)  # the step before: its loss checked, and its progress line every log_interval

if not eval_only:
    progress.summary(iter_num - start_iter, best_val_loss, best_iter, out_dir, plot_summary(out_dir) if master else '',
                     meta)
