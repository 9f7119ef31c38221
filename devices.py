"""The hardware, decided in one place: how a CPU's cores become devices, several hosts, the
compute dtype, the peak FLOPs that MFU is measured against, and the memory a run may use.

setup() must run before anything asks JAX for its devices.
"""
import os
import re
import threading

from common import UserError

# ----------------------------------------------------------------------------- devices


def cores():
    """The cores this process may use (fewer than the machine has in a restricted container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def cpu_device_count(batch_size, cpu_devices, cores):
    """The CPU devices a process's batch is split over: as many as split it evenly, up to one per
    core (at most 8), or up to cpu_devices when that is set."""
    most = cpu_devices or min(cores, 8)
    return max(d for d in range(1, most + 1) if batch_size % d == 0)


def setup(batch_size=1, cpu_devices=0):
    """Before JAX starts: a CPU backend gets one device per core (at most cpu_devices, 0: up to 8)
    among those that split batch_size evenly, so that train.py runs data parallel over them as over
    GPUs (each device's ops run on their own core without waiting for the other's); what JAX
    compiles is kept on disk; several processes (JAX's coordinator variables, Slurm, Open MPI,
    the hosts of a TPU slice) join with jax.distributed, which reads the rest from the cluster. XLA_FLAGS's --xla_force_host_platform_device_count, if given,
    decides the CPU devices instead."""
    import jax
    if 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
        n = cpu_device_count(batch_size, cpu_devices, cores())
        if jax.config.jax_num_cpu_devices != n:  # (bench.py sets it before it runs train.py)
            jax.config.update('jax_num_cpu_devices', n)
    cache_compilations()
    if os.environ.get('JAX_COORDINATOR_ADDRESS') or int(os.environ.get('SLURM_NTASKS', '1')) > 1 \
            or int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1 or ',' in os.environ.get('TPU_WORKER_HOSTNAMES', ''):
        env_int = lambda name: int(os.environ[name]) if name in os.environ else None
        jax.distributed.initialize(num_processes=env_int('JAX_NUM_PROCESSES'), process_id=env_int('JAX_PROCESS_ID'))


def cache_compilations():
    """Keep what JAX compiles on disk, in ~/.cache/gpt-jax/xla (or $JAX_COMPILATION_CACHE_DIR; set
    it empty to turn this off): the next run with the same shapes skips the compilation, several
    seconds of a small run's start. Entries that a full disk left empty are removed first (JAX
    would warn about them and compile again at every run)."""
    import jax
    folder = os.environ.get('JAX_COMPILATION_CACHE_DIR')
    if folder is None:
        folder = os.path.join(os.path.expanduser('~'), '.cache', 'gpt-jax', 'xla')
        jax.config.update('jax_compilation_cache_dir', folder)
    if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)  # what takes longer to compile
    if folder and os.path.isdir(folder):
        for entry in os.scandir(folder):
            try:
                if entry.is_file() and entry.stat().st_size == 0:
                    os.remove(entry.path)
            except OSError:
                pass


def to_host(tree):
    """Replicated arrays -> numpy: this process's own copy (on one host and on many)."""
    import jax
    import numpy as np
    return jax.tree_util.tree_map(lambda a: np.asarray(a.addressable_data(0)), tree)


def compile_in_background(jitted, *args):
    """jitted, compiled for these arguments' shapes in another thread: the first call waits for
    it (a CPU run starts its first step sooner when the step compiles during the first
    evaluation). A compilation error surfaces at that first call."""
    result = []

    def compile_it():
        try:
            result.append(jitted.lower(*args).compile())
        except BaseException as e:  # raised in the caller's thread, at the first call
            result.append(e)
    # not a daemon: an exit waits for the compilation (a daemon thread stopped inside XLA aborts the process)
    thread = threading.Thread(target=compile_it)
    thread.start()

    def call(*a):
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0](*a)
    return call


# ----------------------------------------------------------------------------- the compute dtype

def compute_dtype(setting='auto'):
    """(dtype name, why) for a dtype setting: 'auto' is bfloat16 on GPUs and TPUs, whose matrix
    units are built for it, and on CPUs with bf16 dot-product instructions (AVX512-BF16, AMX),
    where bf16 matmuls run 2-4x faster than float32; float32 on other CPUs."""
    import jax
    if setting != 'auto':
        return setting, 'set'
    backend = jax.default_backend()
    if backend in ('gpu', 'tpu'):
        return 'bfloat16', f'auto: a {backend.upper()}'
    if cpu_has_bf16():
        return 'bfloat16', 'auto: this CPU has bf16 instructions'
    return 'float32', 'auto: this CPU has no bf16 instructions'


def cpu_has_bf16():
    try:
        with open('/proc/cpuinfo') as f:
            return any(flag in f.read() for flag in ('avx512_bf16', 'amx_bf16'))
    except OSError:  # no /proc: not Linux
        return False


# ----------------------------------------------------------------------------- peak FLOPs, for MFU

# Dense bf16 matmul peak per device in TFLOP/s, from the vendors' data sheets (the figures "with
# sparsity" halved), matched against JAX's device_kind in this order:
PEAK_TFLOPS = [
    (r'B200', 2250),  # NVIDIA HGX B200 data sheet: 4.5 PFLOPS FP16/BF16 with sparsity
    (r'H200 NVL', 835), (r'H200', 989),  # H200 data sheet: SXM 1,979, NVL 1,671 with sparsity
    (r'H100 NVL', 835), (r'H100 PCIe', 756), (r'H100', 989),  # H100 data sheet: SXM 1,979, PCIe 1,513 w. sparsity
    (r'A100', 312),  # A100 data sheet: BF16 Tensor Core 312
    (r'\bL4\b', 121),  # L4 data sheet: BF16 Tensor Core 242 with sparsity
    (r'RTX 5090', 209.5),  # GeForce Blackwell whitepaper: FP16/BF16 with FP32 accumulate, dense
    (r'RTX 4090', 165.2),  # Ada Lovelace whitepaper: BF16 with FP32 accumulate, dense
    (r'TPU v6 ?(lite|e)', 918),  # Cloud TPU docs, v6e (Trillium): 918 bf16 TFLOP/s per chip
    (r'TPU v5 ?(lite|e)', 197),  # v5e: 197 per chip
    (r'TPU v5', 459),  # v5p: 459 per chip
    (r'TPU v4', 275),  # v4: 275 per chip
]


def peak_flops(dtype, tflops_setting=0.0, device_kind=None, backend=None, n_devices=None, measure=None):
    """(peak FLOP/s of all the devices, where the figure comes from) for MFU, or (None, None) on a
    CPU. A setting wins; then the data-sheet table; an accelerator missing from it gets a measured
    large matmul (a lower bound on its peak: MFU then reads high). A CPU gets none: its bf16
    throughput varies with the shapes and with whatever else the machine runs (one run showed
    33% to 76% against a timed matmul). device_kind, backend and n_devices default to JAX's."""
    import jax
    device_kind = device_kind or jax.devices()[0].device_kind
    backend = backend or jax.default_backend()
    # a CPU's devices share its cores: its peak is per process
    n = n_devices or (jax.process_count() if backend == 'cpu' else jax.device_count())
    if tflops_setting > 0:
        return n * tflops_setting * 1e12, f'peak_tflops={tflops_setting:g} per device'
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(pattern, device_kind, re.IGNORECASE):
            return n * tflops * 1e12, f'{device_kind}, {tflops:g} TFLOP/s dense bf16 (data sheet)'
    if backend == 'cpu':
        return None, None
    flops = (measure or matmul_flops)(dtype)
    return n * flops, (f'a measured 4096x4096 {jnp_name(dtype)} matmul, {flops / 1e12:.0f} TFLOP/s ({device_kind} is '
                       f'not in the table of peaks; --peak_tflops=N gives its data sheet figure)')


def jnp_name(dtype):
    return getattr(dtype, 'name', str(dtype))


def matmul_flops(dtype, n=4096):
    """FLOP/s of an n x n matmul in dtype with float32 accumulation, best of ten."""
    import time
    import jax
    import jax.numpy as jnp
    a = jnp.ones((n, n), dtype)
    mm = jax.jit(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32))
    mm(a).block_until_ready()
    best = 1e9
    for _ in range(10):
        t0 = time.perf_counter()
        mm(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


# ----------------------------------------------------------------------------- memory

def memory_limit(device):
    """(bytes this process may use on device, what that is): an accelerator's own memory, or on
    a CPU the smallest of the memory available now, the cgroup's limit and the address-space
    limit (ulimit -v)."""
    stats = device.memory_stats() if device.platform != 'cpu' else None
    if stats and 'bytes_limit' in stats:
        return stats['bytes_limit'], f'{device.device_kind} memory'
    limits = []
    try:
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        limits.append((int(info['MemAvailable'].split()[0]) * 1024, 'the memory available'))
    except (OSError, KeyError, ValueError):
        pass
    for path in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit() and int(text) < 1 << 60:
                limits.append((int(text), 'the container\'s memory limit'))
        except OSError:
            pass
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append((soft, 'the address-space limit (ulimit -v)'))
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else (None, 'unknown')


def check_fits(needed, device, what, fix):
    """Refuse, before any work, a run whose estimate of the memory it needs is larger than what
    this device (a CPU: this machine) can give it."""
    limit, of = memory_limit(device)
    if limit is not None and needed > limit:
        raise UserError(f'{what} needs about {needed / 2**30:,.1f} GiB, more than {of} '
                        f'({limit / 2**30:,.1f} GiB): {fix}')


def training_bytes(config, tokens, accumulation, eval_iters, dtype, remat, eval_only):
    """A lower bound of the memory train.py needs on one device (a CPU: one process, whose
    devices share the machine's memory), from the sizes alone: float32 parameters, gradients
    and optimizer state, the activations kept for the backward pass of `tokens` tokens per
    micro-batch, the logits, and the batches of a step and of an evaluation."""
    import jax
    import jax.numpy as jnp
    import model
    n_params = model.num_params(jax.eval_shape(lambda: model.init_params(config, jax.random.key(0))), False)
    per_device = tokens // max(1, jax.local_device_count() if jax.default_backend() != 'cpu' else 1)
    weights = 4 * n_params * (1 if eval_only else 4)  # params; + gradients (2 copies) and at least one moment
    kept = config.n_embd * 8 * jnp.dtype(dtype).itemsize  # a lower bound of what one layer keeps per token
    if jax.default_backend() == 'cpu' or config.dropout > 0:  # no fused attention: the [T, T] softmax
        kept += 4 * config.n_head * config.block_size
    activations = (1 if eval_only else config.n_layer if not remat else 2) * per_device * kept
    logits = 4 * per_device * config.vocab_size
    batches = 8 * per_device * (accumulation + 2 * eval_iters)
    return weights + activations + min(logits, 1 << 28) + batches
