"""Benchmarks: train.py's step, the time a whole run takes to reach a loss, and sampling.

    python bench.py config/train_char.py                       # the training step of that run
    python bench.py config/train_char.py --mode=time_to_loss --target=1.70   # the whole command
    python bench.py --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --batch_size=12 \\
        --gradient_accumulation_steps=1 --dataset=shakespeare_char    # nanoGPT's CPU recipe
    python bench.py config/train_char.py --mode=sample          # sampling: KV cache vs full forwards
    python bench.py config/train_gpt2.py --profile=True         # + a JAX profiler trace

Any train.py setting can be given (config files and --key=value), beside the bench settings
below. mode=train runs train.py itself for `steps` iterations, so it measures the path training
really takes (host batches included); a dataset that is not prepared is replaced by random tokens.
mode=time_to_loss runs `python train.py ...` as a new process, exactly as a user would, and reads
the seconds since the command started at each evaluation from its log. Prints a table and one
JSON line with the results.
"""
import fastmalloc  # first, as train.py: restarts this process with a faster allocator, when installed
import common

common.exit_on_ctrl_c()
common.errors_as_one_line()  # a UserError anywhere below: one `error:` line, exit status 1

import json
import os
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

import configurator
from common import UserError

# ----------------------------------------------------------------------------- bench settings
mode = 'train'  # 'train' (the step), 'time_to_loss' (a whole run) or 'sample'
steps = 30  # train: timed iterations, after compilation
profile = False  # train: write a JAX profiler trace to traces/
target = 0.0  # time_to_loss: report when val loss first reaches this (0: only the whole run)
num_samples = 5  # sample: sequences generated together
max_new_tokens = 500  # sample: new tokens per sequence
keep_fraction = 0.75  # sample: fraction of the context kept when the cache is full, as sample.py
compare_full_forward = True  # sample: also time nanoGPT's method (a full forward per token)
# -----------------------------------------------------------------------------
bench_keys = {name for name, *_ in configurator.read_settings(__file__)}
own = [a for a in sys.argv[1:] if a.startswith('--') and a[2:].split('=')[0] in bench_keys]
rest = [a for a in sys.argv[1:] if a not in own]
if any(a in ('-h', '--help') for a in rest):
    configurator.configure(globals(), ['--help'])  # this docstring and the bench settings; train.py --help: the rest
configurator.configure(globals(), own, quiet=True, rules={'mode': configurator.Choice('train', 'time_to_loss', 'sample'),
                                                          'max_new_tokens': configurator.Count(1)})

# train.py's settings, with the same config files and overrides applied
train_settings = {name: value for name, value, *_ in configurator.read_settings(os.path.join(common.ROOT, 'train.py'))}
train_settings['__file__'] = os.path.join(common.ROOT, 'train.py')
run_config = configurator.configure(train_settings, rest, quiet=True)

if mode == 'time_to_loss':  # the whole command, from the outside, as a user runs it
    out_dir = tempfile.mkdtemp(prefix='bench-')
    cmd = [sys.executable, os.path.join(common.ROOT, 'train.py'), *rest, f'--out_dir={out_dir}', '--init_from=scratch']
    env = {k: v for k, v in os.environ.items() if k not in ('LD_PRELOAD', 'GPT_START_TIME')}  # as a new shell
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        raise UserError(f'train.py failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}')
    evals = [r for r in map(json.loads, open(os.path.join(out_dir, 'log.jsonl'))) if 'val_loss' in r]
    reached = next((r for r in evals if r['val_loss'] <= target), None)
    result = {'mode': mode, 'command': ' '.join(['python', 'train.py', *rest]), 'target': target,
              'seconds_to_target': round(reached['elapsed'], 1) if reached else None,
              'iter_at_target': reached['iter'] if reached else None, 'wall_s': round(wall, 1),
              'best_val_loss': round(min(r['val_loss'] for r in evals), 4), 'final_val_loss': round(evals[-1]['val_loss'], 4),
              'val_curve': [(r['iter'], round(r['elapsed'], 1), round(r['val_loss'], 4)) for r in evals],
              'allocator': next((l.split('memory allocator ')[1] for l in p.stdout.splitlines() if 'memory allocator' in l), None)}
    print()
    for k, v in result.items():
        print(f'{k:>20}: {v}')
    print(json.dumps(result))
    sys.exit(0)

import jax  # noqa: E402  (after the subprocess mode, which needs no JAX here)
import numpy as np  # noqa: E402

import checkpoint  # noqa: E402
import datafiles  # noqa: E402
import devices  # noqa: E402
import model  # noqa: E402
import tokenizer  # noqa: E402
from model import GPTConfig  # noqa: E402

devices.setup(run_config['batch_size'], run_config['cpu_devices'])  # as train.py, before JAX starts
if mode == 'sample' and run_config['init_from'] == 'resume':  # a wrong out_dir stops here, before any work
    ckpt, config = checkpoint.load_run(common.find(run_config['out_dir']))
workdir = tempfile.mkdtemp(prefix='bench-')
data_dir = common.find(os.path.join('data', run_config['dataset']))
if not os.path.isfile(os.path.join(data_dir, 'train.bin')):
    print(f'{data_dir} not prepared: benchmarking on random GPT-2 tokens instead')
    data_dir = os.path.join(workdir, 'data')
    tokens = np.random.default_rng(0).integers(0, 50257, 2_000_000, dtype=np.uint16)
    datafiles.write_dataset(data_dir, {f'{split}.bin': lambda f: datafiles.write_array(f, tokens) for split in ('train', 'val')},
                            {'tokenizer': 'gpt2'})
data_dir = os.path.abspath(data_dir)
dtype, _ = devices.compute_dtype(run_config['dtype'])  # as train.py and sample.py
result = {'mode': mode, 'device': jax.devices()[0].device_kind, 'n_devices': jax.device_count(),
          **{k: run_config[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size',
                                        'gradient_accumulation_steps', 'dropout', 'optimizer')},
          'dtype': dtype, 'allocator': fastmalloc.ALLOCATOR}


def peak_memory_mb():
    stats = jax.devices()[0].memory_stats() or {}
    if 'peak_bytes_in_use' in stats:  # accelerators report their own memory
        return stats['peak_bytes_in_use'] / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS, KiB -> MiB


if mode == 'train':
    out_dir = os.path.join(workdir, 'out')
    sys.argv = ['train.py', *rest, f'--dataset={data_dir}', f'--out_dir={out_dir}', f'--max_iters={steps + 3}',
                '--eval_interval=1000000000', '--eval_iters=1', '--log_interval=1', '--init_from=scratch',
                '--always_save_checkpoint=False', '--warmup_iters=0']
    if profile:
        os.makedirs('traces', exist_ok=True)
        jax.profiler.start_trace('traces')
    runpy.run_path(os.path.join(common.ROOT, 'train.py'), run_name='__main__')
    if profile:
        jax.profiler.stop_trace()
        print('profiler trace written to traces/ (open with TensorBoard or Perfetto)')
    log = [json.loads(line) for line in open(os.path.join(out_dir, 'log.jsonl'))]
    iters = [r for r in log if 'ms' in r]
    ms = statistics.median(r['ms'] for r in iters[3:])
    tokens_per_iter = iters[-1]['tokens_per_s'] * iters[-1]['ms'] / 1000
    tflops = statistics.median(r['tflops'] for r in iters[3:])
    mfu = statistics.median(r['mfu'] for r in iters[3:]) if iters[-1].get('mfu') is not None else None
    result.update(ms_per_iter=round(ms, 2), tokens_per_s=round(tokens_per_iter / (ms / 1000)),
                  tflops=round(tflops, 3), mfu=mfu and round(mfu, 4),
                  compile_s=round((iters[0]['ms'] - ms) / 1000, 2), peak_memory_mb=round(peak_memory_mb()))

elif mode == 'sample':
    import jax.numpy as jnp
    if run_config['init_from'] == 'resume':
        params = ckpt['params']
    else:
        config = GPTConfig(n_layer=run_config['n_layer'], n_head=run_config['n_head'],
                           n_embd=run_config['n_embd'], block_size=run_config['block_size'],
                           vocab_size=tokenizer.model_vocab_size(datafiles.check_dataset(data_dir)))
        params = model.init_params(config, jax.random.key(0))
    params = jax.tree_util.tree_map(jnp.asarray, params)
    idx = jnp.zeros((num_samples, 1), jnp.int32)
    n_new = num_samples * max_new_tokens
    keep_tokens = max(1, round(keep_fraction * config.block_size))

    def timed(fn):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - t0

    gen = lambda seed: model.generate(params, idx, jax.random.key(seed), config, max_new_tokens,
                                      top_k=200, dtype=jnp.dtype(dtype), keep_tokens=keep_tokens)
    first = timed(lambda: gen(0))
    cached = min(timed(lambda: gen(s)) for s in (1, 2))
    result.update(n_params=model.num_params(params), vocab_size=config.vocab_size, block_size=config.block_size,
                  keep_tokens=keep_tokens, num_samples=num_samples, max_new_tokens=max_new_tokens,
                  kv_cache_tokens_per_s=round(n_new / cached), kv_cache_compile_s=round(first - cached, 2))
    if compare_full_forward:
        # nanoGPT's generate(): each token is one forward pass over the whole context, cropped
        # to block_size, then a draw from the last position's logits. The step is compiled for
        # contexts padded up to a power of two (the model is causal: the logits at the last real
        # position are unchanged), each length is timed, and the times are summed over the
        # steps. Host overhead between steps is left out, so this favours the full forward.
        @partial(jax.jit, static_argnames='T')
        def full_forward_step(params, ctx, key, T):
            logits = model.forward(params, ctx, config, dtype=jnp.dtype(dtype))[:, T - 1]
            return model.sample_logits(logits, key, top_k=200)

        def padded(T):
            return min(config.block_size, 1 << (T - 1).bit_length())

        lengths = [min(1 + i, config.block_size) for i in range(max_new_tokens)]  # context per step
        step_s = {}
        for T in sorted(set(lengths)):
            if padded(T) not in step_s:
                ctx = jnp.zeros((num_samples, padded(T)), jnp.int32)
                jax.block_until_ready(full_forward_step(params, ctx, jax.random.key(0), T))  # compile
                step_s[padded(T)] = min(timed(lambda: full_forward_step(params, ctx, jax.random.key(0), T))
                                        for _ in range(3))
        slow = sum(step_s[padded(T)] for T in lengths)
        result.update(full_forward_tokens_per_s=round(n_new / slow, 1), speedup=round(slow / cached, 1))
    result['peak_memory_mb'] = round(peak_memory_mb())

print()
for k, v in result.items():
    print(f'{k:>28}: {v}')
print(json.dumps(result))
