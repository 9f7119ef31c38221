"""model.py against the reference GPT-2 (transformers' GPT2LMHeadModel) and its own invariants."""
import math
import os
import shutil
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import model
from model import GPTConfig

FIXTURE = Path(__file__).parent / 'tests' / 'fixtures'
TINY = GPTConfig(block_size=32, vocab_size=101, n_layer=2, n_head=4, n_embd=64)

fwd = jax.jit(model.forward, static_argnames=('config', 'dtype'))


@pytest.fixture(scope='module')
def tiny_params():
    return model.init_params(TINY, jax.random.key(0))


def random_idx(key, shape, vocab=TINY.vocab_size):
    return jax.random.randint(jax.random.key(key), shape, 0, vocab)


# ----------------------------------------------------------------------------- parity with GPT-2

def test_logits_match_transformers_fixture():
    # fixtures/make_gpt2_fixture.py wrote these logits with transformers' GPT2LMHeadModel
    ref = np.load(FIXTURE / 'gpt2-tiny-logits.npz')
    params, config = model.from_pretrained(str(FIXTURE / 'gpt2-tiny'))
    assert config == GPTConfig(block_size=32, vocab_size=101, n_layer=2, n_head=4, n_embd=64)
    for idx, logits in [(ref['idx'], ref['logits']), (ref['idx_short'], ref['logits_short'])]:
        ours = fwd(params, jnp.asarray(idx), config)
        np.testing.assert_allclose(ours, logits, atol=1e-5, rtol=1e-5)
    # transformers' loss with labels=idx is next-token cross-entropy
    idx = jnp.asarray(ref['idx'])
    loss = model.loss_fn(params, idx[:, :-1], idx[:, 1:], config)
    np.testing.assert_allclose(loss, ref['loss'], rtol=1e-5)


@pytest.mark.transformers
def test_logits_match_transformers_directly(tmp_path):
    torch = pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=3, n_head=2, n_embd=32, vocab_size=77, n_positions=16,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))  # move LayerNorms and biases off their init
    hf.save_pretrained(tmp_path)
    idx = np.random.default_rng(0).integers(0, 77, (3, 16))
    with torch.no_grad():
        expected = hf(torch.tensor(idx)).logits.numpy()
    params, config = model.from_pretrained(str(tmp_path))
    np.testing.assert_allclose(fwd(params, jnp.asarray(idx), config), expected, atol=1e-5, rtol=1e-5)


def test_from_pretrained_downloads_from_server(http_server, tmp_path):
    # the layout of the model hub: <base>/<name>/resolve/main/<file>
    served = http_server.root / 'gpt2' / 'resolve' / 'main'
    served.mkdir(parents=True)
    for f in model.GPT2_FILES:
        shutil.copy(FIXTURE / 'gpt2-tiny' / f, served / f)
    cache = tmp_path / 'cache'
    params, config = model.from_pretrained('gpt2', base_url=http_server.url, cache_dir=str(cache))
    assert sorted(os.listdir(cache / 'gpt2')) == sorted(model.GPT2_FILES)  # no .part files left
    ref = np.load(FIXTURE / 'gpt2-tiny-logits.npz')
    np.testing.assert_allclose(fwd(params, jnp.asarray(ref['idx']), config), ref['logits'], atol=1e-5)
    # a second call uses the cache: the server is not needed any more
    shutil.rmtree(http_server.root / 'gpt2')
    model.from_pretrained('gpt2', base_url=http_server.url, cache_dir=str(cache))


def test_from_pretrained_download_failure_is_clear(tmp_path):
    with pytest.raises(RuntimeError, match='could not download .*local directory'):
        model.from_pretrained('gpt2', base_url='http://127.0.0.1:9', cache_dir=str(tmp_path))
    assert not any(p.suffix in ('.json', '.safetensors') for p in tmp_path.rglob('*'))


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='lacks config.json, model.safetensors'):
        model.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match='neither a directory nor one of gpt2'):
        model.from_pretrained('gpt3')
    # a checkpoint whose tensors disagree with its config.json
    bad = tmp_path / 'bad'
    shutil.copytree(FIXTURE / 'gpt2-tiny', bad)
    cfg = (bad / 'config.json').read_text().replace('"n_embd": 64', '"n_embd": 32')
    (bad / 'config.json').write_text(cfg)
    with pytest.raises(ValueError, match=r'h.0.attn.c_attn.bias: shape \(192,\) in the checkpoint, expected \(96,\)'):
        model.from_pretrained(str(bad))


# ----------------------------------------------------------------------------- invariants

def test_shapes_and_names(tiny_params):
    p = tiny_params
    assert p['wte'].shape == (101, 64) and p['wpe'].shape == (32, 64)
    assert p['h']['attn']['c_attn']['weight'].shape == (2, 64, 192)  # h.{i}.attn.c_attn.weight is row i
    assert p['h']['mlp']['c_proj']['weight'].shape == (2, 256, 64)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(p))
    assert fwd(p, random_idx(1, (3, 17)), TINY).shape == (3, 17, 101)


def test_init_statistics():
    config = GPTConfig(block_size=64, vocab_size=512, n_layer=4, n_head=4, n_embd=256)
    p = model.init_params(config, jax.random.key(0))
    np.testing.assert_allclose(p['wte'].std(), 0.02, rtol=0.02)
    np.testing.assert_allclose(p['h']['attn']['c_attn']['weight'].std(), 0.02, rtol=0.02)
    np.testing.assert_allclose(p['h']['mlp']['c_proj']['weight'].std(), 0.02 / math.sqrt(8), rtol=0.02)
    assert (p['h']['ln_1']['weight'] == 1).all() and (p['h']['mlp']['c_fc']['bias'] == 0).all()


def test_no_bias_config_has_no_bias_tensors():
    p = model.init_params(GPTConfig(**{**TINY.__dict__, 'bias': False}), jax.random.key(0))
    names = ['/'.join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(p)]
    assert names and not [n for n in names if n.endswith('bias')]


def test_causal_future_tokens_do_not_change_past_logits(tiny_params):
    idx = random_idx(2, (2, 32))
    changed = idx.at[:, 20:].set((idx[:, 20:] + 7) % TINY.vocab_size)
    a, b = fwd(tiny_params, idx, TINY), fwd(tiny_params, changed, TINY)
    np.testing.assert_array_equal(a[:, :20], b[:, :20])
    assert not np.allclose(a[:, 20:], b[:, 20:])


def test_loss_at_init_is_about_log_vocab():
    config = GPTConfig(block_size=64, vocab_size=1000, n_layer=2, n_head=4, n_embd=64)
    p = model.init_params(config, jax.random.key(0))
    idx = random_idx(3, (4, 64), 1000)
    loss = model.loss_fn(p, idx, jnp.roll(idx, -1, axis=1), config)
    assert abs(float(loss) - math.log(1000)) < 0.05


def test_loss_ignores_minus_one_targets(tiny_params):
    idx = random_idx(4, (2, 16))
    targets = random_idx(5, (2, 16))
    logits = fwd(tiny_params, idx, TINY)
    masked = targets.at[:, :10].set(-1)
    logp = jax.nn.log_softmax(logits[:, 10:], axis=-1)
    expected = -jnp.take_along_axis(logp, targets[:, 10:, None], axis=-1).mean()
    np.testing.assert_allclose(model.cross_entropy(logits, masked), expected, rtol=1e-6)


def test_plain_attention_matches_jax_reference():
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 24, 4, 16)) for i in range(3))  # [B, T, H, D]
    heads_first = lambda a: jnp.swapaxes(a, 1, 2)
    ours = model.attention(*map(heads_first, (q, k, v)), jnp.arange(24), jnp.float32)
    with jax.default_matmul_precision('highest'):  # the reference in full float32 on GPUs too
        ref = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation='xla')
    np.testing.assert_allclose(heads_first(ours), ref, atol=1e-5)


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuDNN attention needs a GPU')
def test_cudnn_attention_matches_plain_path():
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 4, 128, 64), jnp.bfloat16) for i in range(3))
    assert model.use_flash_attention(q, k, jnp.bfloat16, None)
    flash = model.attention(q, k, v, jnp.arange(128), jnp.bfloat16)  # takes the cuDNN path
    plain = jnp.swapaxes(jax.nn.dot_product_attention(*(jnp.swapaxes(a, 1, 2) for a in (q, k, v)),
                                                      is_causal=True, implementation='xla'), 1, 2)
    np.testing.assert_allclose(flash.astype(jnp.float32), plain.astype(jnp.float32), atol=2e-2)


def test_kv_cache_matches_full_forward(tiny_params):
    idx = random_idx(6, (3, 32))
    full = fwd(tiny_params, idx, TINY)
    cached_forward = jax.jit(model.cached_forward, static_argnames=('config', 'dtype'))
    params = model.unstack_layers(tiny_params)
    # prefill 5 tokens, then one at a time up to block_size
    logits, cache = cached_forward(params, idx[:, :5], model.init_cache(TINY, 3), 0, TINY)
    np.testing.assert_allclose(logits, full[:, 4], atol=1e-5)
    for t in range(5, 32):
        logits, cache = cached_forward(params, idx[:, t:t + 1], cache, t, TINY)
        np.testing.assert_allclose(logits, full[:, t], atol=1e-5)


def test_bf16_forward_close_to_float32(tiny_params):
    idx = random_idx(7, (2, 32))
    f32 = fwd(tiny_params, idx, TINY)
    bf16 = fwd(tiny_params, idx, TINY, dtype=jnp.bfloat16)
    assert bf16.dtype == jnp.float32  # logits stay float32
    np.testing.assert_allclose(bf16, f32, atol=0.05)
    assert float(jnp.abs(bf16 - f32).mean()) < 0.01


def test_gradients_finite_and_bf16_gradients_close():
    config = GPTConfig(block_size=32, vocab_size=101, n_layer=2, n_head=4, n_embd=64, dropout=0.1)
    p = model.init_params(config, jax.random.key(0))
    idx, tgt = random_idx(8, (4, 32)), random_idx(9, (4, 32))
    grad = jax.jit(jax.grad(model.loss_fn), static_argnames=('config', 'dtype'))
    g32 = grad(p, idx, tgt, config)
    g16 = grad(p, idx, tgt, config, dtype=jnp.bfloat16)
    gdrop = grad(p, idx, tgt, config, key=jax.random.key(1))
    for g in (g32, g16, gdrop):
        assert all(bool(jnp.isfinite(x).all()) for x in jax.tree_util.tree_leaves(g))
    for a, b in zip(jax.tree_util.tree_leaves(g32), jax.tree_util.tree_leaves(g16)):
        assert float(jnp.linalg.norm(a - b)) <= 0.05 * float(jnp.linalg.norm(a)) + 1e-6


def test_matmul_gradients_equal_autodiff():
    x = jax.random.normal(jax.random.key(0), (8, 16))
    w = jax.random.normal(jax.random.key(1), (16, 4))
    ours = jax.grad(lambda x, w: jnp.sum(jnp.sin(model.matmul(x, w, jnp.float32))), (0, 1))(x, w)
    ref = jax.grad(lambda x, w: jnp.sum(jnp.sin(jnp.matmul(x, w, precision='highest'))), (0, 1))(x, w)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dropout_exactly_when_a_key_is_given():
    config = GPTConfig(**{**TINY.__dict__, 'dropout': 0.2})
    p = model.init_params(config, jax.random.key(0))
    idx = random_idx(10, (2, 16))
    eval_a = fwd(p, idx, config)
    np.testing.assert_array_equal(eval_a, fwd(p, idx, config))
    train_a = fwd(p, idx, config, key=jax.random.key(1))
    train_b = fwd(p, idx, config, key=jax.random.key(2))
    assert not np.allclose(train_a, eval_a) and not np.allclose(train_a, train_b)
    np.testing.assert_array_equal(train_a, fwd(p, idx, config, key=jax.random.key(1)))
    # without dropout in the config a key changes nothing
    np.testing.assert_array_equal(fwd(tiny_p := model.init_params(TINY, jax.random.key(0)), idx, TINY),
                                  fwd(tiny_p, idx, TINY, key=jax.random.key(1)))


def test_dropout_rate_scale_and_independence():
    # odd size, two chunks of draws and part of a third on the CPU (2^18 words = 2^19 elements)
    x = jnp.ones((1031, 1023))
    n = x.size
    drop_fn = jax.jit(model.dropout, static_argnums=1)
    for rate in (0.1, 0.2, 0.5):
        y = np.asarray(drop_fn(x, rate, jax.random.key(0)))
        dropped = (y == 0).reshape(-1)
        sigma = math.sqrt(rate * (1 - rate) / n)
        assert abs(dropped.mean() - rate) < 5 * sigma
        assert abs(y.mean() - 1.0) < 5 * sigma / (1 - rate)  # the mean is kept
        np.testing.assert_allclose(np.unique(y[y != 0]), [1 / (1 - rate)], rtol=1e-4)
        # neighbours share a 32-bit draw, and chunks have their own keys: no correlation
        both = (dropped[:-1] & dropped[1:]).mean()
        assert abs(both - rate ** 2) < 5 * math.sqrt(rate ** 2 * (1 - rate ** 2) / n)
        tail = n - 2 ** 19  # the second chunk is not a copy of the first
        both = (dropped[:tail] & dropped[2 ** 19:]).mean()
        assert abs(both - rate ** 2) < 5 * math.sqrt(rate ** 2 * (1 - rate ** 2) / tail)
    other = np.asarray(drop_fn(x, 0.2, jax.random.key(1)))
    assert not np.array_equal(other == 0, np.asarray(drop_fn(x, 0.2, jax.random.key(0))) == 0)
    assert model.dropout(x.astype(jnp.bfloat16), 0.2, jax.random.key(0)).dtype == jnp.bfloat16
    assert float(jnp.abs(model.dropout(x, 1.0, jax.random.key(0))).max()) == 0.0
    assert model.dropout(x, 1e-6, jax.random.key(0)) is x  # rounds to no drop at all
    for shape in [(), (0,), (1,), (3,), (2, 0, 5)]:
        small = jnp.ones(shape, jnp.bfloat16)
        out = drop_fn(small, 0.5, jax.random.key(0))
        assert out.shape == shape and out.dtype == jnp.bfloat16
        assert set(np.unique(np.asarray(out, np.float32))) <= {0.0, 2.0}
    with pytest.raises(ValueError, match='dropout rate'):
        model.dropout(x, -0.1, jax.random.key(0))


def test_num_params_gpt2_124m():
    config = GPTConfig(vocab_size=50257)
    shapes = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
    assert model.num_params(shapes) == 123_653_376  # nanoGPT reports 123.65M
    assert model.num_params(shapes, non_embedding=False) == 124_439_808


def test_flops_per_token_is_what_xla_counts_for_a_training_step():
    # the FLOPs that MFU counts (6N + 12LHQT per token, PaLM's appendix B) against XLA's own count
    # of the compiled forward and backward, elementwise work included (~1% here)
    config = GPTConfig(block_size=128, vocab_size=512, n_layer=2, n_head=4, n_embd=256)
    p = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
    idx = jax.ShapeDtypeStruct((4, 128), jnp.int32)
    step = jax.jit(jax.grad(lambda p, i: model.loss_fn(p, i, i, config))).lower(p, idx).compile()
    cost = step.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost['flops'] / idx.size == pytest.approx(model.flops_per_token(config), rel=0.03)


def test_remat_same_gradients_less_memory():
    config = GPTConfig(block_size=64, vocab_size=101, n_layer=4, n_head=4, n_embd=64)
    p = model.init_params(config, jax.random.key(0))
    idx, tgt = random_idx(10, (8, 64)), random_idx(11, (8, 64))
    grad = jax.jit(jax.grad(model.loss_fn), static_argnames=('config', 'remat'))
    plain, remat = (grad.lower(p, idx, tgt, config, remat=r).compile() for r in (False, True))
    leaves = [jax.tree_util.tree_leaves(f(p, idx, tgt)) for f in (plain, remat)]
    for a, b in zip(*leaves):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # only each block's input is kept for the backward pass
    assert remat.memory_analysis().temp_size_in_bytes < 0.7 * plain.memory_analysis().temp_size_in_bytes


# ----------------------------------------------------------------------------- the chunked loss

def plain_loss(x, wte, targets, dtype):
    return model.cross_entropy(model.matmul(x, wte, dtype, transposed_w=True), targets)


@pytest.mark.parametrize('dtype, rtol', [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_chunked_head_loss_equals_plain_loss_and_gradients(dtype, rtol):
    N, C, V = 203, 48, 389  # 203 rows in chunks of 32: the last chunk has 11 rows
    x = jax.random.normal(jax.random.key(0), (N, C))
    wte = 0.3 * jax.random.normal(jax.random.key(1), (V, C))
    targets = jax.random.randint(jax.random.key(2), (N,), 0, V).at[::7].set(-1)  # some ignored
    loss_and_grads = lambda f: jax.jit(jax.value_and_grad(f, (0, 1)), static_argnums=3)(x, wte, targets, dtype)
    chunked = partial(model.head_loss, chunk_rows=32)
    (l1, g1), (l2, g2) = loss_and_grads(plain_loss), loss_and_grads(chunked)
    np.testing.assert_allclose(l2, l1, rtol=1e-5 if dtype == jnp.float32 else 1e-3)
    for a, b in zip(g1, g2):  # gradients, relative to their size
        assert float(jnp.linalg.norm(a - b)) <= rtol * float(jnp.linalg.norm(a))
    assert not np.any(np.asarray(g2[0])[::7])  # an ignored target sends back no gradient
    # the default chunk size covers small vocabularies in one chunk: the plain path itself
    np.testing.assert_array_equal(jax.jit(model.head_loss, static_argnums=3)(x, wte, targets, dtype),
                                  jax.jit(plain_loss, static_argnums=3)(x, wte, targets, dtype))


def test_chunked_head_loss_needs_less_memory_for_gpt2_vocabulary():
    config = GPTConfig(block_size=256, vocab_size=50304, n_layer=1, n_head=2, n_embd=64)
    p = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
    idx = jax.ShapeDtypeStruct((24, 256), jnp.int32)

    def plain_step(params, idx):
        return model.cross_entropy(model.forward(params, idx, config), idx)

    def chunked_step(params, idx):
        return model.loss_fn(params, idx, idx, config)

    temp = [jax.jit(jax.grad(f)).lower(p, idx).compile().memory_analysis().temp_size_in_bytes
            for f in (plain_step, chunked_step)]
    logits_bytes = 24 * 256 * 50304 * 4  # 1.2 GB: over the size that the default splits
    assert temp[0] > logits_bytes  # the plain step holds the float32 logits (and more)
    assert temp[1] < temp[0] / 3
