"""GPT-2 in plain JAX: the model and its loss, sampling with a KV cache, OpenAI's weights."""
# Self-contained (jax, numpy and the standard library), so it can be copied alone. It reads top
# to bottom: config, parameters, layers, the model and its loss, generation, GPT-2's weights, and
# last the backend speed-ups that the layers call (matmul, uniform_bits, flash attention, head_loss).
# Parameters are a nested dict named like GPT-2's tensors. Per-layer tensors are stacked along a
# leading layer axis under 'h': params['h']['attn']['c_attn']['weight'][i] is GPT-2's
# h.{i}.attn.c_attn.weight, and the blocks run with lax.scan, so compile time stays flat in depth.
# Shapes: B batch, T time, C n_embd, H heads, D = C // H, V vocab, L layers, N = B * T.
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

    def __post_init__(self):  # the shapes must make sense
        for name, value in [(k, getattr(self, k)) for k in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd')]:
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f'{name} must be a positive integer, not {value!r}')
        if self.n_embd % self.n_head:
            raise ValueError(f'n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})')
        if not 0 <= self.dropout < 1:
            raise ValueError(f'dropout must be at least 0 and below 1, not {self.dropout}')


# ----------------------------------------------------------------------------- parameters

@partial(jax.jit, static_argnums=0)  # one compilation for all the draws (eagerly, one each: 2 s more on a CPU)
def init_params(config, key):
    """Random GPT-2 parameters, float32. The output head is tied to `wte` (no separate tensor)."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    keys = iter(jax.random.split(key, 6))
    normal = lambda shape, std=0.02: std * jax.random.normal(next(keys), shape, jnp.float32)
    # the residual projections get a smaller init: 2*L of them add into the residual stream
    proj_std = 0.02 / math.sqrt(2 * L)

    def linear(fan_in, fan_out, std=0.02):  # GPT-2's Conv1D layout: weight is (in, out)
        p = {'weight': normal((L, fan_in, fan_out), std)}
        return {**p, 'bias': jnp.zeros((L, fan_out))} if config.bias else p

    def layer_norm(*lead):
        p = {'weight': jnp.ones((*lead, C))}
        return {**p, 'bias': jnp.zeros((*lead, C))} if config.bias else p

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
    # as nanoGPT, the non-embedding count leaves out `wpe`; `wte` stays in: it is also the output head
    size = lambda a: math.prod(a.shape)  # works for arrays and for jax.eval_shape's shapes
    n = sum(size(a) for a in jax.tree_util.tree_leaves(params))
    return n - size(params['wpe']) if non_embedding else n


def flops_per_token(config):
    # training FLOPs per token, for MFU: 6N for the matmuls with weights (forward + backward)
    # plus 12*L*H*D*T for attention (PaLM, appendix B), N the non-embedding parameters
    N = num_params(jax.eval_shape(lambda: init_params(config, jax.random.key(0))))
    L, H, D, T = config.n_layer, config.n_head, config.n_embd // config.n_head, config.block_size
    return 6 * N + 12 * L * H * D * T


# ----------------------------------------------------------------------------- layers

def linear(x, p, dtype):
    # [N, in] -> [N, out] float32. matmul (with the speed-ups, at the end) is x @ w computed in
    # dtype with float32 accumulation. x is cast first, so the copy kept for the backward pass
    # is in the compute dtype: half the memory traffic in bf16.
    y = matmul(x.astype(dtype), p['weight'], dtype)
    return y + p['bias'] if 'bias' in p else y


def layer_norm(x, p, eps=1e-5):
    x = x.astype(jnp.float32)  # statistics in float32 whatever the compute dtype
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * lax.rsqrt(var + eps) * p['weight']
    return y + p['bias'] if 'bias' in p else y


def gelu(x):
    # GPT-2 uses the tanh approximation ("gelu_new"); nanoGPT uses the exact erf form. We match GPT-2.
    return jax.nn.gelu(x, approximate=True)


def dropout(x, rate, key):
    # zero each element with probability `rate` (in steps of 1/65536) and scale the rest by
    # 1 / (1 - rate); only with a key: without one this is the identity
    if not 0 <= rate <= 1:
        raise ValueError(f'dropout rate must be in [0, 1], not {rate}')
    drop = round(rate * 65536)
    if key is None or drop == 0:
        return x
    if drop == 65536:
        return jnp.zeros_like(x)
    kept = uniform_bits(key, x.shape) >= drop  # uint16 numbers, uniform in 0..65535
    return jnp.where(kept, x * (65536 / (65536 - drop)), 0.0).astype(x.dtype)


def split_heads(qkv, B, H):  # [N, 3C] -> q, k, v, each [B, H, T, D]
    qkv = jnp.swapaxes(qkv.reshape(B, qkv.shape[0] // B, 3 * H, -1), 1, 2)  # [B, 3H, T, D]
    return jnp.split(qkv, 3, axis=1)


def attention(q, k, v, q_pos, dtype, rate=0.0, key=None):
    # causal, heads first: q [B, H, Tq, D], k and v [B, H, Tk, D] -> [B, H, Tq, D]. q_pos [Tq]
    # are the queries' positions and key j is at position j, so the same code serves training
    # and decoding over a KV cache (keys after a query's position are masked)
    if use_flash_attention(q, k, dtype, key):  # a fused kernel on GPUs (speed-ups, below)
        return flash_attention(q, k, v, dtype)
    att = matmul(q, k, dtype, transposed_w=True) / math.sqrt(q.shape[-1])  # [B, H, Tq, Tk]
    causal = q_pos[:, None] >= jnp.arange(k.shape[2])[None, :]  # [Tq, Tk]
    att = jax.nn.softmax(jnp.where(causal, att, -jnp.inf), axis=-1)  # float32
    return matmul(dropout(att, rate, key), v, dtype)  # [B, H, Tq, D]


def attention_output(y, p, dtype, rate=0.0, key=None):  # [B, H, T, D] -> [N, C]
    y = jnp.swapaxes(y, 1, 2).reshape(-1, y.shape[1] * y.shape[3])
    return dropout(linear(y, p['attn']['c_proj'], dtype), rate, key)


def mlp(x, p, dtype, rate=0.0, key=None):  # [N, C] -> [N, C], through [N, 4C]
    h = gelu(linear(layer_norm(x, p['ln_2']), p['mlp']['c_fc'], dtype))
    return dropout(linear(h, p['mlp']['c_proj'], dtype), rate, key)


def block(x, p, B, q_pos, config, dtype, key=None):
    # one transformer block on the residual stream x [N, C], N = B * T (2-D activations: every
    # Linear is one [N, K] @ [K, M] matmul); dropout only with a key
    k_att, k_out, k_mlp = (None,) * 3 if key is None else jax.random.split(key, 3)
    q, k, v = split_heads(linear(layer_norm(x, p['ln_1']), p['attn']['c_attn'], dtype), B, config.n_head)
    y = attention(q, k, v, q_pos, dtype, config.dropout, k_att)
    x = x + attention_output(y, p, dtype, config.dropout, k_out)
    return x + mlp(x, p, dtype, config.dropout, k_mlp)


# ----------------------------------------------------------------------------- the model

def embed(params, idx, q_pos):  # idx [B, T] at positions q_pos [T] -> x [N, C]
    x = params['wte'][idx] + params['wpe'][q_pos]
    return x.reshape(-1, x.shape[-1])


def hidden_states(params, idx, config, dtype, key=None, remat=False):
    # embeddings, the blocks (scanned over the stacked layers), the final LayerNorm: idx [B, T] ->
    # [N, C]. remat: keep only each block's input for the backward pass and recompute the rest
    # (a third more compute, far less activation memory: for large models)
    B, T = idx.shape
    q_pos = jnp.arange(T)
    x, keys = embed(params, idx, q_pos), None
    if key is not None:
        key, k_emb = jax.random.split(key)
        x, keys = dropout(x, config.dropout, k_emb), jax.random.split(key, config.n_layer)

    def step(x, layer):
        p, key = layer
        return block(x, p, B, q_pos, config, dtype, key), None

    # Unrolled layers let XLA fuse across them (measured faster on XLA:CPU and on a GPU); past a
    # dozen layers compile time would grow with depth, so those loop. With remat they must loop:
    # across unrolled layers XLA undoes the recomputation.
    unroll = 1 if remat else min(config.n_layer, 12)
    x, _ = lax.scan(jax.checkpoint(step) if remat else step, x, (params['h'], keys), unroll=unroll)
    return layer_norm(x, params['ln_f'])


def head(params, x, dtype):  # the output head, tied to the token embedding: [N, C] -> [N, V] float32
    return matmul(x, params['wte'], dtype, transposed_w=True)


def forward(params, idx, config, *, dtype=jnp.float32, key=None, remat=False):
    """idx: int [B, T] -> logits float32 [B, T, V]. Dropout only with a key (training)."""
    x = hidden_states(params, idx, config, dtype, key, remat)
    return head(params, x, dtype).reshape(*idx.shape, -1)


def cross_entropy(logits, targets):  # mean over the targets that are not -1; logits [..., V]
    logits = logits.reshape(-1, logits.shape[-1]).astype(jnp.float32)
    targets = targets.reshape(-1)
    valid = targets != -1
    picked = jnp.take_along_axis(logits, jnp.where(valid, targets, 0)[:, None], axis=-1)[:, 0]
    nats = jax.nn.logsumexp(logits, axis=-1) - picked
    return jnp.sum(jnp.where(valid, nats, 0.0)) / jnp.maximum(valid.sum(), 1)


def loss_fn(params, idx, targets, config, *, dtype=jnp.float32, key=None, remat=False):
    # cross_entropy(forward(...), targets), computed by head_loss (speed-ups, below) without
    # holding all of the [N, V] logits in memory at once
    x = hidden_states(params, idx, config, dtype, key, remat)
    return head_loss(x, params['wte'], targets.reshape(-1), dtype)


# ----------------------------------------------------------------------------- generation

def unstack_layers(params):
    # 'h' as a list of per-layer dicts, for generation. XLA:CPU copies a slice of the stacked
    # tensors wherever one is used: inside the generation loop that would copy every weight for
    # every token, so the layers are split once, before the loop
    L = jax.tree_util.tree_leaves(params['h'])[0].shape[0]
    return {**params, 'h': [jax.tree_util.tree_map(lambda a: a[i], params['h']) for i in range(L)]}


def init_cache(config, batch_size, dtype=jnp.float32):
    # an empty KV cache: a list over layers of (k, v), each [B, H, block_size, D], one buffer
    # per layer so that each step writes into it in place
    shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.n_layer)]


def cached_block(x, p, kv, B, q_pos, config, dtype):
    # block() for generation: the new keys and values go into this layer's cache kv at q_pos,
    # and the queries attend over the whole cache -> (x, updated kv)
    q, k, v = split_heads(linear(layer_norm(x, p['ln_1']), p['attn']['c_attn'], dtype), B, config.n_head)
    kv = tuple(lax.dynamic_update_slice_in_dim(c, a.astype(c.dtype), q_pos[0], axis=2)
               for c, a in zip(kv, (k, v)))
    x = x + attention_output(attention(q, *kv, q_pos, dtype), p, dtype)
    return x + mlp(x, p, dtype), kv


def cached_forward(params, idx, cache, pos, config, dtype=jnp.float32):
    # idx [B, T] at positions pos..pos+T-1 through the model over the KV cache (params from
    # unstack_layers) -> (logits of the last position [B, V], updated cache). The prompt goes
    # in at pos=0 (prefill), then one token at a time
    B, T = idx.shape
    q_pos = pos + jnp.arange(T)
    x, new_cache = embed(params, idx, q_pos), []
    for p, kv in zip(params['h'], cache):
        x, kv = cached_block(x, p, kv, B, q_pos, config, dtype)
        new_cache.append(kv)
    x = layer_norm(x.reshape(B, T, -1)[:, -1], params['ln_f'])
    return head(params, x, dtype), new_cache


def smallest_top_set(logits, enough):
    # mask of the fewest largest logits of each row [B, V] for which enough(mask) holds, ties
    # included: the top k with enough = 'k kept', the nucleus with enough = 'p of the probability
    # kept'. Found by bisection over float32's 2^32 bit patterns (32 passes): sorting, as lax.top_k
    # does on XLA:CPU, took longer than the rest of a GPT-2 decode step
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
    # -inf for all but the top_k most likely tokens of each row [B, V], then for all but the
    # nucleus: the fewest most likely tokens whose probability reaches top_p. Ties are kept.
    if top_k is not None and top_k < logits.shape[-1]:
        logits = jnp.where(smallest_top_set(logits, lambda kept: kept.sum(-1) >= top_k), logits, -jnp.inf)
    if top_p is not None and top_p < 1.0:
        probs = jax.nn.softmax(logits, axis=-1)
        mass = lambda kept: jnp.where(kept, probs, 0.0).sum(-1)
        logits = jnp.where(smallest_top_set(logits, lambda kept: mass(kept) >= top_p), logits, -jnp.inf)
    return logits


def sample_logits(logits, key, temperature=1.0, top_k=None, top_p=None):  # [B, V] -> int32 [B]
    logits = logits.astype(jnp.float32)
    # the largest logit goes to 0 first: a tiny temperature then sends the others to -inf, not nan
    logits = filter_logits((logits - logits.max(-1, keepdims=True)) / temperature, top_k, top_p)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@partial(jax.jit, static_argnames=('config', 'max_new_tokens', 'top_k', 'top_p', 'dtype',
                                   'keep_tokens', 'on_token'))
def generate(params, idx, key, config, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             dtype=jnp.float32, keep_tokens=None, on_token=None):
    """Sample max_new_tokens after the prompt idx [B, T0] -> [B, T0 + max_new_tokens]."""
    # A prompt longer than block_size is cropped to its last block_size tokens. It is prefilled
    # into the KV cache once, then each token costs a one-token step. The model sees at most
    # block_size tokens: when the cache is full, the context moves on to its last keep_tokens
    # tokens (1..block_size; None: 3/4 of block_size), whose keys and values are computed anew at
    # positions 0..keep_tokens-1 (positions are absolute), and one-token steps go on from there.
    # keep_tokens=block_size is nanoGPT's sliding window, at the cost of a full forward per token.
    # Step i draws with jax.random.split(key, max_new_tokens)[i]. on_token: an optional host
    # function called with each new token batch [B], in order (streaming).
    B, T0 = idx.shape
    if T0 > config.block_size:
        idx, T0 = idx[:, -config.block_size:], config.block_size
    keep = config.block_size * 3 // 4 if keep_tokens is None else keep_tokens
    if not (isinstance(keep, int) and 1 <= keep <= config.block_size):
        raise ValueError(f'keep_tokens must be a number of tokens in 1..{config.block_size}, not {keep!r}')
    if max_new_tokens == 0:
        return idx
    params = unstack_layers(params)
    tokens = jnp.zeros((B, T0 + max_new_tokens), jnp.int32).at[:, :T0].set(idx)
    logits, cache = cached_forward(params, idx, init_cache(config, B, dtype), 0, config, dtype)
    keys = jax.random.split(key, max_new_tokens)

    def step(carry, move_on=False):  # draw the token at t, then feed it to the model
        tokens, logits, cache, t, n = carry  # n: positions held in the cache
        tok = sample_logits(logits, keys[t - T0], temperature, top_k, top_p)
        if on_token is not None:
            jax.debug.callback(on_token, tok, ordered=True)
        tokens = lax.dynamic_update_slice_in_dim(tokens, tok[:, None], t, axis=1)
        if move_on:  # the cache is full: start again from the last keep tokens
            context = lax.dynamic_slice_in_dim(tokens, t + 1 - keep, keep, axis=1)
            return (tokens, *cached_forward(params, context, cache, 0, config, dtype), t + 1, jnp.int32(keep))
        return (tokens, *cached_forward(params, tok[:, None], cache, n, config, dtype), t + 1, n + 1)

    extend = lambda _, carry: step(carry)
    move_on_and_extend = lambda carry, count: (lax.fori_loop(0, count, extend, step(carry, True)), None)
    # When the cache fills up is known in advance, so the loop is laid out statically (a lax.cond
    # between the two kinds of step would copy the whole cache at every token): extend up to
    # block_size, then rounds of [move on, extend until full again].
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
GPT2_CACHE_DIR = os.environ.get('GPT2_CACHE_DIR', os.path.join(os.path.expanduser('~'), '.cache', 'gpt2-jax'))
GPT2_FILES = ('config.json', 'model.safetensors')


def _download_gpt2(name, base_url, cache_dir):
    import requests  # only needed to fetch weights
    dest = os.path.join(cache_dir, name)
    os.makedirs(dest, exist_ok=True)
    for fname in GPT2_FILES:
        path, url = os.path.join(dest, fname), f'{base_url}/{name}/resolve/main/{fname}'
        if os.path.exists(path):
            continue
        try:
            print(f'downloading {url}')
            with requests.get(url, stream=True, timeout=30) as r, open(path + '.part', 'wb') as f:
                r.raise_for_status()
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        except requests.RequestException as e:
            raise RuntimeError(f'could not download {url}: {e}. Without network, pass a local '
                               f'directory holding {" and ".join(GPT2_FILES)} instead.') from e
        os.replace(path + '.part', path)  # complete files only: a broken download is retried
    return dest


def gpt2_tensor_name(keypath, layer=None):  # ('h', 'attn', 'c_attn', 'weight') -> 'h.{layer}.attn.c_attn.weight'
    parts = [str(getattr(k, 'key', k)) for k in keypath]
    if parts[0] in ('wte', 'wpe'):  # our embedding tables are bare arrays
        return parts[0] + '.weight'
    return '.'.join([parts[0], str(layer), *parts[1:]] if parts[0] == 'h' else parts)


def from_pretrained(name_or_dir, base_url=None, cache_dir=None):
    """GPT-2 weights in transformers' format -> (params, GPTConfig)."""
    # name_or_dir: one of GPT2_SIZES (downloaded once into the cache) or a directory with
    # config.json and model.safetensors
    from safetensors.numpy import load_file  # only needed to read these files

    if not os.path.isdir(path := name_or_dir):
        if name_or_dir not in GPT2_SIZES:
            raise ValueError(f'{name_or_dir!r} is neither a directory nor one of {", ".join(GPT2_SIZES)}')
        path = _download_gpt2(name_or_dir, base_url or GPT2_BASE_URL, cache_dir or GPT2_CACHE_DIR)
    if missing := [f for f in GPT2_FILES if not os.path.isfile(os.path.join(path, f))]:
        raise FileNotFoundError(f'{path} lacks {", ".join(missing)}: expected a transformers-format GPT-2')
    try:
        with open(os.path.join(path, 'config.json')) as f:
            hf = json.load(f)
        config = GPTConfig(block_size=hf['n_positions'], vocab_size=hf['vocab_size'], n_layer=hf['n_layer'],
                           n_head=hf['n_head'], n_embd=hf['n_embd'])
        # names are 'h.0.attn.c_attn.weight', possibly prefixed 'transformer.'; buffers are skipped
        sd = {k.removeprefix('transformer.'): v for k, v in load_file(os.path.join(path, 'model.safetensors')).items()}
    except Exception as e:  # a truncated or foreign file (safetensors raises its own error type)
        raise ValueError(f'{path} does not hold a readable GPT-2 ({type(e).__name__}: {e})') from None

    def load(name, shape):
        if name not in sd:
            raise ValueError(f'{path}/model.safetensors has no tensor {name!r}')
        a = np.asarray(sd[name], np.float32)
        if a.shape != shape:
            raise ValueError(f'{name}: shape {a.shape} in the checkpoint, expected {shape}')
        return a

    def leaf(keypath, spec):  # the per-layer tensors h.0.<rest> .. h.{L-1}.<rest>, stacked
        if keypath[0].key != 'h':
            return load(gpt2_tensor_name(keypath), spec.shape)
        return np.stack([load(gpt2_tensor_name(keypath, i), spec.shape[1:]) for i in range(config.n_layer)])

    expected = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    return jax.tree_util.tree_map(jnp.asarray, jax.tree_util.tree_map_with_path(leaf, expected)), config


# ============================================================================= backend speed-ups
# Everything below makes the model above faster or leaner on some hardware without changing
# what it computes (up to rounding); each piece says why it is there. The measured figures are
# in the README's Performance section.

@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def matmul(x, w, dtype, transposed_w=False):
    # x @ w (x @ w.T if transposed_w) in `dtype` with float32 accumulation -> float32 [..., N, M].
    # Its own backward runs the two gradient matmuls in `dtype` too: autodiff would give them a
    # float32 cotangent, so float32 matmuls (measured: slower on XLA:CPU)
    w = w.astype(dtype)
    if transposed_w:  # a decode step's few rows: folding the transpose into the dot is cheaper
        w = transpose(w) if x.shape[-2] > 8 else jnp.swapaxes(w, -1, -2)
    return _dot(x.astype(dtype), w)


def _dot(a, b):  # float32 accumulation; float32 inputs at full precision (GPUs would use TF32)
    precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
    return jnp.matmul(a, b, precision=precision, preferred_element_type=jnp.float32)


def _matmul_bwd(dtype, transposed_w, res, g):
    x, w = res
    x16, w16, g = x.astype(dtype), w.astype(dtype), g.astype(dtype)
    if transposed_w:  # y = x @ w.T, w [M, K]
        dx, dw = _dot(g, w16), _dot(transpose(g), x16)
    else:
        dx, dw = _dot(g, transpose(w16)), _dot(transpose(x16), g)
    return dx.astype(x.dtype), dw.astype(w.dtype)


matmul.defvjp(lambda x, w, dtype, transposed_w: (matmul(x, w, dtype, transposed_w), (x, w)), _matmul_bwd)


def transpose(a):
    # a [..., N, K] -> [..., K, N], materialized. XLA:CPU runs a bf16 dot on its fast (AMX) path
    # only when the left operand contracts over its last axis; it folds a plain transpose into
    # the dot and falls back to a slow path, but not one that goes through tiles of 8 rows, so the
    # weight gradients run on the fast path. GPUs and TPUs transpose for free.
    *lead, N, K = a.shape
    if jax.default_backend() != 'cpu' or N % 8:
        return jnp.swapaxes(a, -1, -2)
    return jnp.moveaxis(a.reshape(*lead, N // 8, 8, K), -1, -3).reshape(*lead, K, N)


def uniform_bits(key, shape):
    # uint16 numbers, uniform in 0..65535: two from each 32-bit draw (half the random bits of
    # jax.random.bernoulli). XLA:CPU runs threefry as passes over whole arrays, several times slower
    # per number once they fall out of the cache, so on the CPU they come in 1 MB chunks. The same
    # key gives other numbers on other backends.
    n = math.prod(shape)
    words, chunk = (n + 1) // 2, 1 << 18
    if jax.default_backend() == 'cpu' and words > chunk:
        keys = jax.random.split(key, -(-words // chunk))
        bits = lax.map(lambda k: jax.random.bits(k, (chunk,), jnp.uint32), keys)
    else:
        bits = jax.random.bits(key, (words,), jnp.uint32)
    return lax.bitcast_convert_type(bits, jnp.uint16).reshape(-1)[:n].reshape(shape)


def use_flash_attention(q, k, dtype, key):
    # cuDNN's fused attention on GPUs: never builds the [T, T] matrix. It has no attention-weight
    # dropout, so training with dropout (a key) takes the plain path; so do cache lookups (Tq < Tk).
    return (jax.default_backend() == 'gpu' and jnp.dtype(dtype).itemsize == 2
            and q.shape[2] == k.shape[2] and key is None)


def flash_attention(q, k, v, dtype):
    q, k, v = (jnp.swapaxes(a, 1, 2).astype(dtype) for a in (q, k, v))  # cuDNN's [B, T, H, D]
    return jnp.swapaxes(jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation='cudnn'), 1, 2)


def head_loss(x, wte, targets, dtype, chunk_rows=None):
    # cross_entropy(head(x), targets) for x [N, C], targets [N], in chunks of rows, with a backward
    # that recomputes each chunk's logits: the [N, V] float32 logits (3.3 GB for GPT-2 at batch 16)
    # never exist at once. chunk_rows None: logits over 1 GB go in chunks of at most 256 MB; smaller
    # ones take the plain path, which is faster (measured on XLA:CPU)
    N, V = x.shape[0], wte.shape[0]
    if (N * V * 4 <= 1 << 30) if chunk_rows is None else N <= chunk_rows:  # one chunk: plain
        return cross_entropy(matmul(x, wte, dtype, transposed_w=True), targets)
    n = -(-N // (chunk_rows or max(8, (1 << 26) // V)))  # chunks
    R = -(-N // (8 * n)) * 8  # rows per chunk: a multiple of 8, as few padded rows as that allows
    pad = lambda a, value: jnp.pad(a, [(0, n * R - N)] + [(0, 0)] * (a.ndim - 1), constant_values=value)
    xs, ts = pad(x, 0).reshape(n, R, -1), pad(targets, -1).reshape(n, R)
    return _chunked_nats(xs, wte, ts, dtype) / jnp.maximum((targets != -1).sum(), 1)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _chunked_nats(xs, wte, ts, dtype):  # summed nats over chunks xs [n, R, C], ts [n, R]
    return _chunked_nats_fwd(xs, wte, ts, dtype)[0]


def _chunked_nats_fwd(xs, wte, ts, dtype):
    def chunk(total, xt):
        logits = matmul(xt[0], wte, dtype, transposed_w=True)  # [R, V]
        lse = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, jnp.maximum(xt[1], 0)[:, None], axis=-1)[:, 0]
        return total + jnp.sum(jnp.where(xt[1] != -1, lse - picked, 0.0)), lse
    total, lse = lax.scan(chunk, jnp.float32(0), (xs, ts))
    return total, (xs, wte, ts, lse)


def _chunked_nats_bwd(dtype, res, g):
    xs, wte, ts, lse = res
    w16 = wte.astype(dtype)

    def chunk(dwte, xtl):
        x, t, lse = xtl
        p = jnp.exp(matmul(x, wte, dtype, transposed_w=True) - lse[:, None])  # softmax, [R, V]
        p = (p - jax.nn.one_hot(t, p.shape[-1], dtype=p.dtype)) * jnp.where(t != -1, g, 0.0)[:, None]
        p16 = p.astype(dtype)
        return dwte + _dot(transpose(p16), x.astype(dtype)), _dot(p16, w16).astype(x.dtype)
    dwte, dxs = lax.scan(chunk, jnp.zeros(wte.shape, jnp.float32), (xs, ts, lse))
    return dxs, dwte.astype(wte.dtype), None


_chunked_nats.defvjp(_chunked_nats_fwd, _chunked_nats_bwd)
