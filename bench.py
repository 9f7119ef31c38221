"""Benchmarks: train.py's training step, and sampling with the KV cache against full forwards.

    python bench.py config/train_char.py                       # the train step of that run
    python bench.py --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --batch_size=12 \\
        --gradient_accumulation_steps=1 --dataset=shakespeare_char    # nanoGPT's CPU recipe
    python bench.py config/train_char.py --mode=sample --init_from=resume   # its checkpoint
    python bench.py config/train_gpt2.py --profile=True        # + a JAX profiler trace

Any train.py setting can be given (config files and --key=value). The training benchmark runs
train.py itself for `steps` iterations, so it measures the path training really takes (host
batches included). A dataset that is not prepared is replaced by random tokens. Prints a
table and one JSON line with the results.
"""
import json
import os
import resource
import runpy
import statistics
import sys
import tempfile
import time
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import configurator  # noqa: E402
import fastmalloc  # noqa: E402

fastmalloc.reexec_with_tcmalloc()  # as train.py does

# ----------------------------------------------------------------------------- bench settings
mode = 'train'  # 'train' or 'sample'
steps = 30  # timed training iterations (after compilation)
profile = False  # write a JAX profiler trace to traces/
num_samples = 5  # sampling: sequences generated together
max_new_tokens = 500
keep = 0.75  # sampling: fraction of the context kept when the cache is full, as sample.py
compare_full_forward = True  # sampling: also time nanoGPT's method (a full forward per token)
# -----------------------------------------------------------------------------
bench_keys = [k for k, v in dict(globals()).items() if not k.startswith('_') and
              isinstance(v, (bool, int, float, str)) and k not in ('HERE',)]
own = [a for a in sys.argv[1:] if a.startswith('--') and a[2:].split('=')[0] in bench_keys]
rest = [a for a in sys.argv[1:] if a not in own]
if any(a in ('-h', '--help') for a in rest):
    print(__doc__)
    configurator.configure(globals(), ['--help'])
configurator.configure(globals(), own, quiet=True)

# train.py's settings, with the same config files and overrides applied
train_settings = {}
settings_code = open(os.path.join(HERE, 'train.py')).read().split(' settings\n', 1)[1]
exec(settings_code.split('import configurator')[0], train_settings)
run_config = configurator.configure(train_settings, rest, quiet=True)

import jax  # noqa: E402
import numpy as np  # noqa: E402

workdir = tempfile.mkdtemp(prefix='bench-')
data_dir = os.path.join('data', train_settings['dataset'])
if not os.path.isfile(os.path.join(data_dir, 'train.bin')):
    print(f'{data_dir} not prepared: benchmarking on random GPT-2 tokens instead')
    data_dir = os.path.join(workdir, 'data')
    os.makedirs(data_dir)
    tokens = np.random.default_rng(0).integers(0, 50257, 2_000_000, dtype=np.uint16)
    for split in ('train', 'val'):
        tokens.tofile(os.path.join(data_dir, f'{split}.bin'))
data_dir = os.path.abspath(data_dir)
result = {'mode': mode, 'device': jax.devices()[0].device_kind, 'n_devices': jax.device_count(),
          **{k: run_config[k] for k in ('n_layer', 'n_head', 'n_embd', 'block_size', 'batch_size',
                                        'gradient_accumulation_steps', 'dtype', 'dropout')}}


def peak_memory_mb():
    stats = jax.devices()[0].memory_stats() or {}
    if 'peak_bytes_in_use' in stats:  # accelerators report their own memory
        return stats['peak_bytes_in_use'] / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS, KiB -> MiB


if mode == 'train':
    out_dir = os.path.join(workdir, 'out')
    sys.argv = ['train.py', *rest, f'--dataset={data_dir}', f'--out_dir={out_dir}',
                f'--max_iters={steps + 3}', '--eval_interval=1000000000', '--eval_iters=1',
                '--log_interval=1', '--init_from=scratch', '--always_save_checkpoint=False']
    if profile:
        os.makedirs('traces', exist_ok=True)
        jax.profiler.start_trace('traces')
    runpy.run_path(os.path.join(HERE, 'train.py'), run_name='__main__')
    if profile:
        jax.profiler.stop_trace()
        print('profiler trace written to traces/ (open with TensorBoard or Perfetto)')
    log = [json.loads(line) for line in open(os.path.join(out_dir, 'log.jsonl'))]
    iters = [r for r in log if 'ms' in r]
    ms = statistics.median(r['ms'] for r in iters[3:])
    tokens_per_iter = iters[-1]['tokens_per_s'] * iters[-1]['ms'] / 1000
    import model
    from model import GPTConfig
    vocab = 50304 if 'vocab_size' not in run_config else run_config['vocab_size']
    meta_path = os.path.join(data_dir, 'meta.pkl')
    if os.path.exists(meta_path):
        import checkpoint
        vocab = checkpoint.load(meta_path)['vocab_size']
    gconf = GPTConfig(n_layer=run_config['n_layer'], n_head=run_config['n_head'], n_embd=run_config['n_embd'],
                      block_size=run_config['block_size'], vocab_size=vocab, bias=run_config['bias'])
    flops = model.flops_per_token(gconf) * tokens_per_iter / (ms / 1000)
    result.update(ms_per_iter=round(ms, 2), tokens_per_s=round(tokens_per_iter / (ms / 1000)),
                  tflops=round(flops / 1e12, 3), mfu=round(statistics.median(r['mfu'] for r in iters[3:]), 4),
                  compile_s=round((iters[0]['ms'] - ms) / 1000, 2), peak_memory_mb=round(peak_memory_mb()))

elif mode == 'sample':
    import jax.numpy as jnp
    import checkpoint
    import model
    from model import GPTConfig
    if run_config['init_from'] == 'resume':
        ckpt = checkpoint.load(os.path.join(run_config['out_dir'], 'ckpt.pkl'))
        config, params = GPTConfig(**ckpt['model_args']), ckpt['params']
    else:
        config = GPTConfig(n_layer=run_config['n_layer'], n_head=run_config['n_head'],
                           n_embd=run_config['n_embd'], block_size=run_config['block_size'],
                           vocab_size=50304 if 'char' not in data_dir else 65)
        params = model.init_params(config, jax.random.key(0))
    params = jax.tree_util.tree_map(jnp.asarray, params)
    dtype = jnp.dtype('float32' if run_config['dtype'] == 'auto' and jax.default_backend() == 'cpu'
                      else 'bfloat16' if run_config['dtype'] == 'auto' else run_config['dtype'])
    idx = jnp.zeros((num_samples, 1), jnp.int32)
    n_new = num_samples * max_new_tokens
    keep_tokens = max(1, round(keep * config.block_size))

    def timed(fn):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - t0

    gen = lambda seed: model.generate(params, idx, jax.random.key(seed), config, max_new_tokens,
                                      top_k=200, dtype=dtype, keep=keep_tokens)
    first = timed(lambda: gen(0))
    cached = min(timed(lambda: gen(s)) for s in (1, 2))
    result.update(n_params=model.num_params(params), vocab_size=config.vocab_size, dtype=str(dtype),
                  block_size=config.block_size, keep=keep_tokens,
                  num_samples=num_samples, max_new_tokens=max_new_tokens,
                  kv_cache_tokens_per_s=round(n_new / cached), kv_cache_compile_s=round(first - cached, 2))
    if compare_full_forward:
        # nanoGPT's generate(): each token is one forward pass over the whole context, cropped
        # to block_size, then a draw from the last position's logits. The step is compiled for
        # contexts padded up to a power of two (the model is causal: the logits at the last real
        # position are unchanged), each length is timed, and the times are summed over the
        # steps. Host overhead between steps is left out, so this favours the full forward.
        @partial(jax.jit, static_argnames='T')
        def full_forward_step(params, ctx, key, T):
            logits = model.forward(params, ctx, config, dtype=dtype)[:, T - 1]
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
else:
    sys.exit(f"error: mode must be 'train' or 'sample', not {mode!r}")

print()
for k, v in result.items():
    print(f'{k:>28}: {v}')
print(json.dumps(result))
