"""GPT-2 in plain JAX: config, parameters, forward pass, loss, KV-cache generation, GPT-2 weights.

Self-contained (jax, numpy and the standard library only), so it can be copied alone.
Parameters are a nested dict named like GPT-2's tensors. The per-layer tensors are stacked
along a leading layer axis under `h`, so `params['h']['attn']['c_attn']['weight'][i]` is
GPT-2's `h.{i}.attn.c_attn.weight`, and the blocks run with `lax.scan`: compile time stays
flat in depth (an unrolled 48-layer training step compiles for minutes on XLA:CPU).
Generation, forward only, splits the layers once and runs them as a Python loop (see decode).
Shapes: B batch, T time, C n_embd, H heads, D = C // H, V vocab, L layers, N = B*T.
"""
import json
import math
import os
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@dataclass(frozen=True)  # frozen: hashable, so it can be a static argument of jit
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, as GPT-2


# ----------------------------------------------------------------------------- parameters

def init_params(config, key):
    """Random GPT-2 parameters, float32. The output head is tied to `wte` (no separate tensor)."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    keys = iter(jax.random.split(key, 6))

    def normal(shape, std=0.02):
        return std * jax.random.normal(next(keys), shape, jnp.float32)

    # the residual projections get a smaller init: 2*L of them add into the residual stream
    proj_std = 0.02 / math.sqrt(2 * L)

    def linear(fan_in, fan_out, std=0.02):  # GPT-2's Conv1D layout: weight is (in, out)
        p = {'weight': normal((L, fan_in, fan_out), std)}
        if config.bias:
            p['bias'] = jnp.zeros((L, fan_out), jnp.float32)
        return p

    def layer_norm(*lead):
        p = {'weight': jnp.ones((*lead, C), jnp.float32)}
        if config.bias:
            p['bias'] = jnp.zeros((*lead, C), jnp.float32)
        return p

    return {
        'wte': normal((V, C)),
        'wpe': normal((config.block_size, C)),
        'h': {
            'ln_1': layer_norm(L),
            'attn': {'c_attn': linear(C, 3 * C), 'c_proj': linear(C, C, proj_std)},
            'ln_2': layer_norm(L),
            'mlp': {'c_fc': linear(C, 4 * C), 'c_proj': linear(4 * C, C, proj_std)},
        },
        'ln_f': layer_norm(),
    }


def num_params(params, non_embedding=True):
    """Parameter count. As nanoGPT, the non-embedding count leaves out `wpe`; `wte` stays in
    because it is also the output head."""
    size = lambda a: math.prod(a.shape)  # works for arrays and for jax.eval_shape's shapes
    n = sum(size(a) for a in jax.tree_util.tree_leaves(params))
    return n - size(params['wpe']) if non_embedding else n


def flops_per_token(config):
    """Training FLOPs per token: 6N for the matmuls with weights (forward + backward) plus
    12*L*H*D*T for attention (PaLM, appendix B), N the non-embedding parameters. For MFU."""
    N = num_params(jax.eval_shape(lambda: init_params(config, jax.random.key(0))))
    L, H, D, T = config.n_layer, config.n_head, config.n_embd // config.n_head, config.block_size
    return 6 * N + 12 * L * H * D * T


# ----------------------------------------------------------------------------- layers

def transpose(a):
    """a [..., N, K] -> [..., K, N], materialized. XLA:CPU runs a dot on its fast path only when
    the left operand contracts over its last axis; it would fold a plain transpose into the dot
    and fall back to a slow path, but it does not fold one that goes through tiles of 8 rows.
    Elsewhere (GPU) the dot takes the transpose for free."""
    *lead, N, K = a.shape
    if jax.default_backend() != 'cpu' or N % 8:
        return jnp.swapaxes(a, -1, -2)
    tiles = a.reshape(*lead, N // 8, 8, K)
    return jnp.moveaxis(tiles, -1, -3).reshape(*lead, K, N)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def matmul(x, w, dtype, transposed_w=False):
    """x @ w (or x @ w.T) computed in `dtype` with float32 accumulation:
    [..., N, K] @ [..., K, M] (w given as [..., M, K] if transposed_w) -> float32 [..., N, M].
    A custom backward so that the two gradient matmuls also run in `dtype`: autodiff would hand
    them a float32 cotangent and so compute them in float32, several times slower in bf16."""
    w = w.astype(dtype)
    return _dot(x.astype(dtype), jnp.swapaxes(w, -1, -2) if transposed_w else w)


def _dot(a, b):
    # float32 accumulation; float32 inputs at full float32 precision (GPUs would use TF32)
    precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
    return jnp.matmul(a, b, precision=precision, preferred_element_type=jnp.float32)


def _matmul_fwd(x, w, dtype, transposed_w):
    return matmul(x, w, dtype, transposed_w), (x, w)


def _matmul_bwd(dtype, transposed_w, res, g):
    x, w = res
    x16, w16, g = x.astype(dtype), w.astype(dtype), g.astype(dtype)
    if transposed_w:  # y = x @ w.T, w [M, K]
        dx = _dot(g, w16)
        dw = _dot(transpose(g), x16)
    else:
        dx = _dot(g, jnp.swapaxes(w16, -1, -2))
        dw = _dot(transpose(x16), g)
    return dx.astype(x.dtype), dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def default_dtype():
    """The compute dtype to use: bfloat16 on GPUs, and on CPUs with bf16 dot-product instructions
    (AVX512-BF16, AMX), where bf16 matmuls run 2-4x faster than float32; float32 elsewhere."""
    if jax.default_backend() == 'gpu':
        return 'bfloat16'
    try:
        with open('/proc/cpuinfo') as f:
            flags = f.read()
    except OSError:
        return 'float32'
    return 'bfloat16' if 'avx512_bf16' in flags or 'amx_bf16' in flags else 'float32'


def linear(x, p, dtype):
    # [N, in] -> [N, out]. The input is cast before the matmul so that the copy kept for the
    # backward pass is in the compute dtype: half the memory traffic in bf16.
    y = matmul(x.astype(dtype), p['weight'], dtype)
    return y + p['bias'] if 'bias' in p else y


def layer_norm(x, p, eps=1e-5):
    # statistics in float32 whatever the compute dtype
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * lax.rsqrt(var + eps) * p['weight']
    return y + p['bias'] if 'bias' in p else y


def gelu(x):
    # GPT-2 uses the tanh approximation ("gelu_new"); nanoGPT uses the exact erf form. We match GPT-2.
    return jax.nn.gelu(x, approximate=True)


def dropout(x, rate, key):
    """Zero each element with probability `rate` (rounded to a multiple of 1/65536) and scale
    the rest by 1 / (1 - rate). Two 16-bit random numbers per 32-bit draw: half the random bits
    of jax.random.bernoulli."""
    if not 0 <= rate <= 1:
        raise ValueError(f'dropout rate must be in [0, 1], not {rate}')
    drop = round(rate * 65536)
    if key is None or drop == 0:
        return x
    if drop == 65536:
        return jnp.zeros_like(x)
    n = x.size
    words = (n + 1) // 2
    # XLA:CPU runs threefry as passes over whole arrays, several times slower per number once
    # they no longer fit in the cache, so on the CPU the draws come in chunks of 2^18 (1 MB).
    # (The same key then gives other masks on other backends.)
    chunk = 1 << 18
    if jax.default_backend() == 'cpu' and words > chunk:
        keys = jax.random.split(key, -(-words // chunk))
        bits = lax.map(lambda k: jax.random.bits(k, (chunk,), jnp.uint32), keys)
    else:
        bits = jax.random.bits(key, (words,), jnp.uint32)
    u16 = lax.bitcast_convert_type(bits, jnp.uint16).reshape(-1)[:n].reshape(x.shape)
    return jnp.where(u16 >= drop, x * (65536 / (65536 - drop)), 0.0).astype(x.dtype)


def attention(q, k, v, q_pos, config, dtype, key=None):
    """Causal attention, heads first. q: [B, H, Tq, D], k/v: [B, H, Tk, D] -> [B, H, Tq, D].
    q_pos: [Tq] absolute positions of the queries (key j is position j), so the same code
    serves training, prefill and decoding over a KV cache (keys past q_pos are masked)."""
    D = q.shape[-1]
    use_cudnn = (jax.default_backend() == 'gpu' and jnp.dtype(dtype).itemsize == 2
                 and q.shape[2] == k.shape[2] and key is None)
    if use_cudnn:
        # flash attention: never builds the [T, T] matrix. Attention-weight dropout needs the
        # weights themselves, so training with dropout > 0 takes the plain path below.
        q, k, v = (jnp.swapaxes(a, 1, 2).astype(dtype) for a in (q, k, v))  # cuDNN's [B, T, H, D]
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation='cudnn')
        return jnp.swapaxes(y, 1, 2)
    att = matmul(q, k, dtype, transposed_w=True)
    att = att * (1.0 / math.sqrt(D))  # [B, H, Tq, Tk]
    causal = q_pos[:, None] >= jnp.arange(k.shape[2])[None, :]  # [Tq, Tk]
    att = jnp.where(causal, att, -jnp.inf)
    att = jax.nn.softmax(att, axis=-1)  # float32
    att = dropout(att, config.dropout, key)
    return matmul(att, v, dtype)  # [B, H, Tq, D]


def block(x, p, B, q_pos, config, dtype, key=None, kv=None):
    """One transformer block on the residual stream x: [N, C], N = B * Tq.
    While generating, kv is this layer's KV cache (k, v), each [B, H, block_size, D]: the new
    keys/values are written at q_pos, the queries attend over the whole cache, and the updated
    cache is returned."""
    N, C = x.shape
    H, D = config.n_head, C // config.n_head
    k_attn, k_res1, k_res2 = (None,) * 3 if key is None else jax.random.split(key, 3)

    qkv = linear(layer_norm(x, p['ln_1']), p['attn']['c_attn'], dtype)  # [N, 3C]
    qkv = jnp.swapaxes(qkv.reshape(B, N // B, 3 * H, D), 1, 2)  # [B, 3H, Tq, D]
    q, k, v = jnp.split(qkv, 3, axis=1)  # each [B, H, Tq, D]
    if kv is not None:
        k, v = kv = tuple(lax.dynamic_update_slice_in_dim(c, a.astype(c.dtype), q_pos[0], axis=2)
                          for c, a in zip(kv, (k, v)))
    y = attention(q, k, v, q_pos, config, dtype, k_attn)  # [B, H, Tq, D]
    y = jnp.swapaxes(y, 1, 2).reshape(N, C)
    x = x + dropout(linear(y, p['attn']['c_proj'], dtype), config.dropout, k_res1)

    h = gelu(linear(layer_norm(x, p['ln_2']), p['mlp']['c_fc'], dtype))  # [N, 4C]
    x = x + dropout(linear(h, p['mlp']['c_proj'], dtype), config.dropout, k_res2)
    return x, kv


# ----------------------------------------------------------------------------- the model

def embed(params, idx, q_pos):
    """Token plus position embeddings: idx [B, T] at positions q_pos [T] -> x [B * T, C].
    2-D activations: every Linear is then one plain [N, K] @ [K, M] matmul."""
    x = params['wte'][idx] + params['wpe'][q_pos]
    return x.reshape(-1, x.shape[-1])


def _run(params, idx, config, dtype, rng=None, remat=False):
    """Embeddings, the blocks (scanned over the stacked layers) and the final LayerNorm:
    idx [B, T] -> final hidden states [B * T, C].
    remat: keep only each block's input for the backward pass and recompute the rest
    (about a third more compute, far less activation memory: for large models)."""
    B, T = idx.shape
    q_pos = jnp.arange(T)
    x = embed(params, idx, q_pos)
    keys = None
    if rng is not None and config.dropout > 0:
        rng, k_emb = jax.random.split(rng)
        x = dropout(x, config.dropout, k_emb)
        keys = jax.random.split(rng, config.n_layer)

    def step(x, layer):
        p, key = layer
        return block(x, p, B, q_pos, config, dtype, key)[0], None

    if remat:
        step = jax.checkpoint(step)
    # Unrolling lets XLA fuse across layers: much faster steps on XLA:CPU, and 1.5x on a GPU
    # for GPT-2 124M. Beyond a dozen layers compile time would grow with depth: those loop.
    # With remat the layers must loop: across unrolled layers XLA undoes the recomputation.
    unroll = 1 if remat else min(config.n_layer, 12)
    x, _ = lax.scan(step, x, (params['h'], keys), unroll=unroll)
    return layer_norm(x, params['ln_f'])


def head(params, x, dtype):
    # the output head is tied to the token embedding: [N, C] @ [C, V] -> [N, V], float32
    return matmul(x, params['wte'], dtype, transposed_w=True)


def forward(params, idx, config, *, train=False, rng=None, dtype=jnp.float32, remat=False):
    """idx: int [B, T] -> logits float32 [B, T, V]. Dropout only with train=True and an rng."""
    x = _run(params, idx, config, dtype, rng=rng if train else None, remat=remat)
    return head(params, x, dtype).reshape(*idx.shape, -1)


def cross_entropy(logits, targets):
    """Mean cross-entropy in float32 over the targets that are not -1."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(jnp.float32)
    targets = targets.reshape(-1)
    valid = targets != -1
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, jnp.where(valid, targets, 0)[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(valid, logz - picked, 0.0)) / jnp.maximum(valid.sum(), 1)


def loss_fn(params, idx, targets, config, *, train=False, rng=None, dtype=jnp.float32, remat=False):
    logits = forward(params, idx, config, train=train, rng=rng, dtype=dtype, remat=remat)
    return cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- generation

def unstack_layers(params):
    """The parameters with 'h' as a list of per-layer dicts, for generation. XLA:CPU copies a
    slice of the stacked tensors wherever one is used: inside the generation loop that would
    copy every weight for every token, so the layers are split once, before the loop."""
    L = jax.tree_util.tree_leaves(params['h'])[0].shape[0]
    return {**params, 'h': [jax.tree_util.tree_map(lambda a: a[i], params['h']) for i in range(L)]}


def init_cache(config, batch_size, dtype=jnp.float32):
    """An empty KV cache for block_size positions: a list over layers of (k, v), each
    [B, H, block_size, D] (heads first, as attention reads them), one buffer per layer so
    that each step writes its new entries in place."""
    H = config.n_head
    shape = (batch_size, H, config.block_size, config.n_embd // H)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.n_layer)]


def decode(params, idx, cache, pos, config, dtype=jnp.float32):
    """Run idx [B, T] at positions pos..pos+T-1 through the model, writing their keys and
    values into the cache and attending over it. params: from unstack_layers (the layers run
    as a Python loop, one cache buffer each). Prefill is decode with the whole prompt at
    pos=0; then one token at a time. Returns the logits of the last position [B, V] and the
    updated cache."""
    B, T = idx.shape
    q_pos = pos + jnp.arange(T)
    x = embed(params, idx, q_pos)
    new_cache = []
    for p, kv in zip(params['h'], cache):
        x, kv = block(x, p, B, q_pos, config, dtype, kv=kv)
        new_cache.append(kv)
    x = layer_norm(x, params['ln_f'])
    return head(params, x.reshape(B, T, -1)[:, -1], dtype), new_cache


def above_cutoff(logits, enough):
    """Mask of the logits >= v, per row of logits [B, V] (float32), for the largest v such that
    enough(mask) holds: the top k with enough = at least k kept, the nucleus with enough = at
    least p of the probability kept. Found by bisection over float32's 2^32 bit patterns (32
    passes over the row): sorting the row, as lax.top_k and jnp.sort do on XLA:CPU, took longer
    than the rest of a GPT-2 decode step (73 vs 4 ms for 5 x 50304, top 200)."""
    bits = lax.bitcast_convert_type(jnp.where(logits == 0, 0.0, logits), jnp.uint32)  # -0.0 as 0.0
    keys = jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(1 << 31))  # ordered as the floats

    def bisect(_, lo_hi):  # invariant: enough(keys >= lo), and the answer is <= hi
        lo, hi = lo_hi
        mid = lo + (hi - lo) // 2 + 1
        ok = enough(keys >= mid[:, None])
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    lo = jnp.zeros(logits.shape[:-1], jnp.uint32)
    lo, _ = lax.fori_loop(0, 32, bisect, (lo, jnp.full_like(lo, 0xFFFFFFFF)))
    return keys >= lo[:, None]


def filter_logits(logits, top_k=None, top_p=None):
    """Sets to -inf all but the top_k most likely tokens of each row of logits [B, V], then all
    but the nucleus: the smallest set of most likely tokens whose probability reaches top_p.
    Ties at a cutoff are kept."""
    if top_k is not None and top_k < logits.shape[-1]:
        logits = jnp.where(above_cutoff(logits, lambda kept: kept.sum(-1) >= top_k), logits, -jnp.inf)
    if top_p is not None and top_p < 1.0:
        probs = jax.nn.softmax(logits, axis=-1)
        mass = lambda kept: jnp.where(kept, probs, 0.0).sum(-1)
        logits = jnp.where(above_cutoff(logits, lambda kept: mass(kept) >= top_p), logits, -jnp.inf)
    return logits


def sample_logits(logits, key, temperature=1.0, top_k=None, top_p=None):
    """Draw one token per row from logits [B, V] (float32) -> int32 [B]."""
    logits = filter_logits(logits.astype(jnp.float32) / temperature, top_k, top_p)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@partial(jax.jit, static_argnames=('config', 'max_new_tokens', 'top_k', 'top_p', 'dtype', 'keep',
                                   'on_token'))
def generate(params, idx, key, config, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             dtype=jnp.float32, keep=None, on_token=None):
    """Sample max_new_tokens after the prompt idx [B, T0] -> [B, T0 + max_new_tokens] (a prompt
    longer than block_size is cropped to its last block_size tokens first).

    The prompt is prefilled into the KV cache once, then each new token costs one single-token
    step. The model cannot see further back than block_size: when the cache is full, the
    context moves on to its last `keep` tokens (an int in 1..block_size; None: 3/4 of
    block_size). The model has absolute positions, so those tokens' keys and values are
    computed anew at positions 0..keep-1 (one prefill), and single-token steps go on from
    there. keep=block_size moves the window one token at a time, exactly as nanoGPT's sampler,
    but then every token past block_size costs a forward pass over the whole window.
    Step i draws with jax.random.split(key, max_new_tokens)[i].
    on_token: an optional host function called with each new token batch [B], in order (streaming).
    """
    B, T0 = idx.shape
    if T0 > config.block_size:  # the model cannot see further back than block_size
        idx, T0 = idx[:, -config.block_size:], config.block_size
    keep = config.block_size * 3 // 4 if keep is None else keep
    if not (isinstance(keep, int) and 1 <= keep <= config.block_size):
        raise ValueError(f'keep must be a number of tokens in 1..{config.block_size}, not {keep!r}')
    if max_new_tokens == 0:
        return idx
    params = unstack_layers(params)
    tokens = jnp.zeros((B, T0 + max_new_tokens), jnp.int32).at[:, :T0].set(idx)
    logits, cache = decode(params, idx, init_cache(config, B, dtype), 0, config, dtype)

    keys = jax.random.split(key, max_new_tokens)

    def step(carry, move_on=False):  # draw the token at t, then feed it to the model
        tokens, logits, cache, t, n = carry  # n: positions held in the cache
        tok = sample_logits(logits, keys[t - T0], temperature, top_k, top_p)
        if on_token is not None:
            jax.debug.callback(on_token, tok, ordered=True)
        tokens = lax.dynamic_update_slice_in_dim(tokens, tok[:, None], t, axis=1)
        if move_on:  # the cache is full: start again from the last keep tokens
            window = lax.dynamic_slice_in_dim(tokens, t + 1 - keep, keep, axis=1)
            return (tokens, *decode(params, window, cache, 0, config, dtype), t + 1, jnp.int32(keep))
        # there is room: the new token goes into the cache at position n
        return (tokens, *decode(params, tok[:, None], cache, n, config, dtype), t + 1, n + 1)

    extend = lambda _, carry: step(carry)

    def move_on_and_extend(carry, count):
        return lax.fori_loop(0, count, extend, step(carry, move_on=True)), None

    # When the cache fills up is known in advance, so the loop is laid out statically (a
    # lax.cond between the two kinds of step would copy the whole cache at every token):
    # extend up to block_size, then rounds of [move on, extend until full again].
    first = min(max_new_tokens, config.block_size - T0)
    carry = lax.fori_loop(0, first, extend, (tokens, logits, cache, jnp.int32(T0), jnp.int32(T0)))
    per_round = config.block_size - keep + 1  # tokens drawn per round
    rounds, rest = divmod(max_new_tokens - first, per_round)
    counts = [per_round - 1] * rounds + ([rest - 1] if rest else [])  # extend steps per round
    if counts:
        carry, _ = lax.scan(move_on_and_extend, carry, jnp.array(counts, jnp.int32))
    return carry[0]


# ----------------------------------------------------------------------------- GPT-2 weights

GPT2_SIZES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')
# Where the weights come from and where they are kept; both can be overridden for mirrors and tests.
GPT2_BASE_URL = os.environ.get('GPT2_BASE_URL', 'https://huggingface.co/openai-community')
GPT2_CACHE_DIR = os.environ.get('GPT2_CACHE_DIR',
                                os.path.join(os.path.expanduser('~'), '.cache', 'gpt2-jax'))
GPT2_FILES = ('config.json', 'model.safetensors')


def _download_gpt2(name, base_url, cache_dir):
    import requests  # only needed to fetch weights
    dest = os.path.join(cache_dir, name)
    os.makedirs(dest, exist_ok=True)
    for fname in GPT2_FILES:
        path = os.path.join(dest, fname)
        if os.path.exists(path):
            continue
        url = f'{base_url}/{name}/resolve/main/{fname}'
        print(f'downloading {url}')
        try:
            with requests.get(url, stream=True, timeout=30) as r:
                r.raise_for_status()
                with open(path + '.part', 'wb') as f:
                    for chunk in r.iter_content(1 << 20):
                        f.write(chunk)
        except requests.RequestException as e:
            raise RuntimeError(f'could not download {url}: {e}. Without network, pass a local '
                               f'directory holding {" and ".join(GPT2_FILES)} instead.') from e
        os.replace(path + '.part', path)  # complete files only: a broken download is retried
    return dest


def from_pretrained(name_or_dir, base_url=None, cache_dir=None):
    """GPT-2 weights in transformers' format -> (params, GPTConfig).
    name_or_dir: 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' (downloaded once into the
    cache) or a directory with config.json and model.safetensors."""
    from safetensors.numpy import load_file  # only needed to read checkpoints

    if os.path.isdir(name_or_dir):
        path = name_or_dir
    elif name_or_dir in GPT2_SIZES:
        path = _download_gpt2(name_or_dir, base_url or GPT2_BASE_URL, cache_dir or GPT2_CACHE_DIR)
    else:
        raise ValueError(f'{name_or_dir!r} is neither a directory nor one of {", ".join(GPT2_SIZES)}')
    missing = [f for f in GPT2_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f'{path} lacks {", ".join(missing)}: expected a transformers-format '
                                f'GPT-2 ({" and ".join(GPT2_FILES)})')
    with open(os.path.join(path, 'config.json')) as f:
        hf = json.load(f)
    config = GPTConfig(block_size=hf['n_positions'], vocab_size=hf['vocab_size'],
                       n_layer=hf['n_layer'], n_head=hf['n_head'], n_embd=hf['n_embd'],
                       bias=True, dropout=0.0)
    # names are 'h.0.attn.c_attn.weight', possibly prefixed 'transformer.'; buffers are skipped
    sd = {k.removeprefix('transformer.'): v for k, v in
          load_file(os.path.join(path, 'model.safetensors')).items()}

    expected = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))

    def load(name, shape):
        if name not in sd:
            raise ValueError(f'{path}/model.safetensors has no tensor {name!r}')
        a = np.asarray(sd[name], np.float32)
        if a.shape != shape:
            raise ValueError(f'{name}: shape {a.shape} in the checkpoint, expected {shape}')
        return a

    def leaf(keypath, spec):
        parts = [k.key for k in keypath]
        if parts[0] in ('wte', 'wpe'):  # our embedding tables are bare arrays
            return load(parts[0] + '.weight', spec.shape)
        if parts[0] != 'h':
            return load('.'.join(parts), spec.shape)
        # stack h.0.<rest> .. h.{L-1}.<rest> along the leading layer axis
        rest = '.'.join(parts[1:])
        return np.stack([load(f'h.{i}.{rest}', spec.shape[1:]) for i in range(config.n_layer)])

    params = jax.tree_util.tree_map_with_path(leaf, expected)
    return jax.tree_util.tree_map(jnp.asarray, params), config
