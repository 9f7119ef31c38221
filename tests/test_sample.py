"""KV-cache generation (model.generate) against plain full-forward sampling, and sample.py end to end."""
import os
import subprocess
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import checkpoint
import configurator
import files
import tokenizer
from helpers import CHARS_TEXT, assert_one_error_line, char_dataset, run_in_process, train_char_model
import model
from model import GPTConfig

ROOT = Path(__file__).resolve().parent.parent  # the project folder
SAMPLE = str(ROOT / 'sample.py')
CFG = GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope='module')
def params():
    p = model.init_params(CFG, jax.random.key(0))
    # sharpen the random model so that sampling is not uniform noise, and make it depend on
    # positions: its greedy text then varies along the sequence (not one token repeated), and
    # keys/values at wrong positions would change it
    return {**p, 'wte': p['wte'] * 5, 'wpe': p['wpe'] * 20}


@partial(jax.jit, static_argnames=('config', 'top_k', 'top_p'))
def next_token(params, context, length, key, config, temperature=1.0, top_k=None, top_p=None):
    """One full forward of context [B, block_size], whose first `length` tokens are real and the
    rest padding, and a draw from the logits at the last real position. The model is causal, so
    the padding changes nothing before it: this is the forward of the real tokens alone, compiled
    once for every length."""
    logits = model.forward(params, context, config)  # [B, block_size, vocab]
    return model.sample_logits(lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False), key,
                               temperature, top_k, top_p)


def full_forward_sampler(params, idx, key, config, n, keep=None, **kw):
    """Plain sampling, one full forward of the context per token, with generate()'s context:
    it grows to block_size, then moves on to its last `keep` tokens. keep=block_size is
    nanoGPT's sampler (the last block_size tokens at every step)."""
    keep = keep or config.block_size * 3 // 4
    idx = np.asarray(idx)
    start = max(0, idx.shape[1] - config.block_size)
    keys = jax.random.split(key, n)
    for i in range(n):
        context = idx[:, start:]
        padded = np.pad(context, ((0, 0), (0, config.block_size - context.shape[1])))
        tok = np.asarray(next_token(params, padded, context.shape[1], keys[i], config, **kw))
        idx = np.concatenate([idx, tok[:, None]], axis=1)
        if idx.shape[1] - start > config.block_size:
            start = idx.shape[1] - keep
    return idx


# (prompt length, keep): within and past block_size (16); keep=16 is nanoGPT's sliding window
@pytest.mark.parametrize('prompt_len, keep', [(1, None), (5, 16), (16, None), (20, 1), (5, 9)])
def test_greedy_kv_cache_generation_equals_full_forwards_past_block_size(params, prompt_len, keep):
    idx = jax.random.randint(jax.random.key(1), (3, prompt_len), 0, CFG.vocab_size)
    n = 40  # runs past block_size (16) more than once
    ours = model.generate(params, idx, jax.random.key(2), CFG, n, top_k=1, keep_tokens=keep)
    ref = full_forward_sampler(params, idx, jax.random.key(2), CFG, n, keep=keep, top_k=1)
    np.testing.assert_array_equal(ours[:, -n:], ref[:, -n:])
    assert len(np.unique(ours[:, -n:])) > 3  # a meaningful check: not one token repeated


def test_sampling_equals_full_forward_sampler_with_the_same_random_numbers(params):
    idx = jax.random.randint(jax.random.key(3), (4, 3), 0, CFG.vocab_size)
    kw = dict(temperature=0.9, top_k=20, top_p=0.95)
    out = {}
    for keep in (None, CFG.block_size):
        out[keep] = model.generate(params, idx, jax.random.key(4), CFG, 40, keep_tokens=keep, **kw)
        ref = full_forward_sampler(params, idx, jax.random.key(4), CFG, 40, keep=keep, **kw)
        np.testing.assert_array_equal(out[keep], ref)
    # the context kept past block_size does matter: the two policies part ways there
    ours, nanogpt = out[None], out[CFG.block_size]
    np.testing.assert_array_equal(ours[:, :CFG.block_size + 1], nanogpt[:, :CFG.block_size + 1])
    assert not np.array_equal(ours, nanogpt)


def test_a_tiny_temperature_samples_what_greedy_decoding_samples(params):
    # 1e-45 is float32's smallest number: logits divided by it overflow unless the largest is
    # taken off first, and inf - inf would make every draw nan (the shapes of a test above: its
    # greedy loop is compiled already)
    idx = jax.random.randint(jax.random.key(9), (3, 1), 0, CFG.vocab_size)
    greedy = model.generate(params, idx, jax.random.key(2), CFG, 40, top_k=1)
    for temperature in (1e-45, 1e-38, 1e-30):
        np.testing.assert_array_equal(model.generate(params, idx, jax.random.key(2), CFG, 40,
                                                     temperature=temperature), greedy)
    assert len(np.unique(greedy[:, -40:])) > 3  # not one token over and over


def test_no_new_tokens_and_bad_keep(params):
    idx = jnp.arange(20, dtype=jnp.int32).reshape(1, 20) % CFG.vocab_size
    np.testing.assert_array_equal(model.generate(params, idx, jax.random.key(0), CFG, 0), idx[:, -16:])
    for keep in (0, 17, 0.75):
        with pytest.raises(ValueError, match='keep_tokens must be a number of tokens in 1..16'):
            model.generate(params, idx, jax.random.key(0), CFG, 5, keep_tokens=keep)


def test_same_seed_same_text_other_seed_other_text(params):
    idx = jnp.zeros((2, 1), jnp.int32)
    a = model.generate(params, idx, jax.random.key(5), CFG, 20, temperature=3.0)
    b = model.generate(params, idx, jax.random.key(5), CFG, 20, temperature=3.0)
    c = model.generate(params, idx, jax.random.key(6), CFG, 20, temperature=3.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_top_k_and_top_p_never_pick_outside_the_allowed_set():
    logits = jax.random.normal(jax.random.key(7), (64, 50)) * 3
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    order = np.argsort(-probs, axis=-1)
    draw = jax.jit(model.sample_logits, static_argnames=('top_k', 'top_p'))
    for i in range(20):
        key = jax.random.key(100 + i)
        tok = np.asarray(draw(logits, key, top_k=5))
        assert all(t in order[r, :5] for r, t in enumerate(tok))
        tok = np.asarray(draw(logits, key, top_p=0.5))
        for r, t in enumerate(tok):
            cum = np.cumsum(probs[r, order[r]])
            allowed = order[r, :np.searchsorted(cum, 0.5) + 1]  # smallest prefix reaching 0.5
            assert t in allowed
    # top_p keeps at least the most likely token, however small top_p is
    tok = model.sample_logits(logits, jax.random.key(0), top_p=1e-9)
    np.testing.assert_array_equal(tok, order[:, 0])


def test_filter_logits_equals_sorting_the_row():
    """The bisection cutoffs against the plain definition by sorting, with ties and -inf."""
    x = np.asarray(jax.random.normal(jax.random.key(8), (6, 50304)), np.float32) * 3
    x[:, :3000] = np.round(x[:, :3000])  # many ties
    x[:, 3000:4000] = -np.inf  # already masked out
    x[5] = 0.0  # a row of one value
    x[4] = -np.abs(x[4])
    x[4, :100] = 0.0  # the top 100 of this row are zeros, ten of them -0.0: all tie
    x[4, :10] = -0.0
    for k in (1, 50, 200, 50303):
        kth = -np.sort(-x, axis=-1)[:, k - 1:k]
        np.testing.assert_array_equal(model.filter_logits(x, top_k=k), np.where(x < kth, -np.inf, x))
    for p in (1e-9, 0.3, 0.9, 0.999):
        sorted_x = -np.sort(-x, axis=-1)
        probs = np.asarray(jax.nn.softmax(sorted_x, axis=-1), np.float64)
        n_keep = np.sum(np.cumsum(probs, axis=-1) - probs < p, axis=-1)  # smallest prefix reaching p
        cutoff = np.take_along_axis(sorted_x, n_keep[:, None] - 1, axis=-1)
        ours = np.asarray(model.filter_logits(x, top_p=p))
        ref = np.where(x < cutoff, -np.inf, x)
        # near p = 1 float32 sums of ~27k probabilities may put a boundary token on the other side
        assert np.sum(np.isfinite(ours) != np.isfinite(ref)) <= (2 if p > 0.99 else 0)


# ----------------------------------------------------------------------------- what sample.py refuses, in this process

def sample_settings(*argv):
    """sample.py's settings checked as sample.py checks them: its defaults (read from the file),
    then configurator.configure with the shared rules."""
    g = {name: value for name, value, *_ in configurator.read_settings(SAMPLE)}
    g['__file__'] = SAMPLE
    return configurator.configure(g, argv, quiet=True)


@pytest.mark.parametrize('flag, words', [
    ('--temperature=0.0', ['temperature must be a positive number', '--top_k=1 decodes greedily']),
    ('--temperature=1e39', ["temperature must be a positive number within float32's range"]),
    ('--top_k=0', ['top_k must be at least 1, not 0']),
    ('--top_p=0', ['top_p must be a number above 0 and at most 1, not 0']),
    ('--keep_fraction=0.0', ['keep_fraction must be a number above 0 and at most 1, not 0.0']),
    ('--keep_fraction=1.5', ['keep_fraction must be a number above 0 and at most 1, not 1.5']),
    ('--num_samples=0', ['num_samples must be at least 1, not 0']),
    ('--num_samples=1.5', ["key 'num_samples' expects int"]),
    ('--max_new_tokens=-1', ['max_new_tokens must be at least 0, not -1']),
    ('--dtype=float64', ["dtype must be 'auto', 'float32', 'bfloat16' or 'float16', not 'float64'"]),
    ('--sed=1', ["unknown key 'sed'", "did you mean 'seed'?"]),
])
def test_bad_settings_are_one_error_line(capsys, flag, words):
    assert_one_error_line(run_in_process(capsys, sample_settings, flag), *words)
    assert sample_settings()['temperature'] == 0.8  # the defaults themselves pass


def test_prompts_and_vocabularies_the_tokenizer_refuses(capsys):
    stoi = {c: i for i, c in enumerate(sorted(set(CHARS_TEXT)))}
    tok = tokenizer.from_meta({'vocab_size': len(stoi), 'stoi': stoi, 'itos': {i: c for c, i in stoi.items()}},
                              'out/ckpt.pkl')
    assert tok.decode(tok.encode('ROMEO: hello')) == 'ROMEO: hello'
    assert_one_error_line(run_in_process(capsys, tok.encode, 'ROMEO{Ω}'), "outside the vocabulary: '{}Ω'")
    # hand-edited or broken records of the vocabulary in a checkpoint
    for record, words in [({'vocab_size': 0, 'itos': {}, 'stoi': {}}, ['out/ckpt.pkl holds no vocabulary']),
                          ({'itos': list('abc')}, ['holds no vocabulary of characters']),
                          ({'stoi': {'a': 'x'}}, ['holds no vocabulary of characters']),
                          ({'stoi': {'a': 1.5}}, ['holds no vocabulary of characters']),
                          ('chars', ['out/ckpt.pkl records its vocabulary as a str']),
                          ({'vocab_size': 300, 'tokenizer': {'pat_str': 1}}, ['a tokenizer tiktoken cannot read'])]:
        assert_one_error_line(run_in_process(capsys, tokenizer.from_meta, record, 'out/ckpt.pkl'), *words)


# ----------------------------------------------------------------------------- sample.py


@pytest.fixture(scope='module')
def char_run(tmp_path_factory):
    """A working directory with a char-level dataset and a checkpoint trained a few steps (shared
    by the tests below, which leave it as it is)."""
    cwd = tmp_path_factory.mktemp('char_run')
    train_char_model(cwd, 30)
    return cwd


def sample(cwd, *args, cache=None):
    env = dict(os.environ, **({'JAX_COMPILATION_CACHE_DIR': str(cache)} if cache else {}))  # else the session's
    return subprocess.run([sys.executable, SAMPLE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_sample_char_checkpoint_end_to_end(char_run, tmp_path):
    p = sample(char_run, '--out_dir=out', '--start=ROMEO:', '--num_samples=3', '--max_new_tokens=40',
               cache=tmp_path / 'xla-cache')
    assert p.returncode == 0, p.stderr
    samples = p.stdout.split('---------------\n')
    assert len(samples) == 4 and samples[-1] == ''  # three samples, each closed by dashes
    assert 'character vocabulary of 24' in p.stderr
    assert any((tmp_path / 'xla-cache').iterdir())  # the compiled loop is kept for the next run
    for s in samples[:3]:
        assert s.startswith('ROMEO:') and len(s.rstrip('\n')) >= 6 + 30
        assert set(s) <= set(CHARS_TEXT)


def test_sample_streams_one_sample_and_is_reproducible(char_run):
    a = sample(char_run, '--out_dir=out', '--start=JULIET:', '--num_samples=1', '--max_new_tokens=50')
    b = sample(char_run, '--out_dir=out', '--start=JULIET:', '--num_samples=1', '--max_new_tokens=50')
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and 'JULIET:' in a.stdout and a.stdout.endswith('---------------\n')


def test_a_tiny_temperature_through_sample_py_is_greedy_decoding_not_nan(char_run):
    p = sample(char_run, '--out_dir=out', '--start=ROMEO:', '--num_samples=2', '--max_new_tokens=30',
               '--temperature=1e-45', '--dtype=float32')
    assert p.returncode == 0, p.stderr
    ckpt, config = checkpoint.load_run(char_run / 'out')
    itos = ckpt['tokenizer']['itos']
    prompt = jnp.tile(jnp.asarray([ckpt['tokenizer']['stoi'][c] for c in 'ROMEO:'], jnp.int32)[None], (2, 1))
    greedy = model.generate(jax.tree_util.tree_map(jnp.asarray, ckpt['params']), prompt, jax.random.key(1337),
                            config, 30, top_k=1, keep_tokens=24)
    assert p.stdout == ''.join(''.join(itos[int(i)] for i in row) + '\n---------------\n' for row in np.asarray(greedy))
    assert len(set(p.stdout)) > 5  # text, not newlines only


def test_file_prompt(char_run):
    (char_run / 'prompt.txt').write_text('JULIET: hello')
    p = sample(char_run, '--out_dir=out', '--start=FILE:prompt.txt', '--num_samples=2', '--max_new_tokens=5')
    assert p.returncode == 0, p.stderr
    assert p.stdout.count('JULIET: hello') == 2


def test_bpe_checkpoint_uses_gpt2_tokens(gpt2_bpe, tmp_path):
    config = GPTConfig(block_size=32, vocab_size=50304, n_layer=1, n_head=2, n_embd=16)
    params = jax.tree_util.tree_map(np.asarray, model.init_params(config, jax.random.key(0)))
    files.save_pickle(tmp_path / 'out' / 'ckpt.pkl', {'params': params, 'model_args': asdict(config),
                                                      'config': {'dataset': 'openwebtext'}})
    p = sample(tmp_path, '--out_dir=out', '--start=Hello world<|endoftext|>', '--num_samples=2',
               '--max_new_tokens=8')
    assert p.returncode == 0, p.stderr
    assert "tokens: GPT-2's BPE" in p.stderr and p.stdout.count('Hello world<|endoftext|>') == 2


def test_bad_inputs_end_to_end_are_one_error_line(char_run, tmp_path):
    # one of each kind that sample.py wires up itself: a setting, the prompt, the checkpoint, memory
    assert_one_error_line(sample(char_run, '--out_dir=out', '--temperature=0.0'), 'temperature must be a positive number')
    assert_one_error_line(sample(char_run, '--out_dir=out', '--start=ROMEO{Ω}'), "outside the vocabulary: '{}Ω'")
    assert_one_error_line(sample(char_run, '--out_dir=out', '--start=FILE:missing.txt'),
                          'cannot read the prompt file missing.txt')
    (tmp_path / 'latin1.txt').write_bytes('caf\xe9'.encode('latin-1'))
    assert_one_error_line(sample(char_run, '--out_dir=out', f'--start=FILE:{tmp_path / "latin1.txt"}'),
                          'latin1.txt is not UTF-8 text (bad byte at offset 3)')
    ckpt = files.load_pickle(char_run / 'out' / 'ckpt.pkl')
    ckpt['params']['h']['attn']['c_attn']['weight'] = ckpt['params']['h']['attn']['c_attn']['weight'][:, :, :8]
    files.save_pickle(tmp_path / 'edited' / 'ckpt.pkl', ckpt)
    assert_one_error_line(sample(char_run, f'--out_dir={tmp_path / "edited"}'),
                          'not a checkpoint written by train.py', 'h.attn.c_attn.weight is float32 (2, 32, 8)')


@pytest.mark.parametrize('sizes', [['--num_samples=1000000000'],
                                   ['--num_samples=100000', '--max_new_tokens=2147483647']])
def test_sizes_that_cannot_fit_are_refused_before_any_work(char_run, sizes):
    p = sample(char_run, '--out_dir=out', *sizes)
    assert_one_error_line(p, 'GiB, more than', 'lower num_samples or max_new_tokens')
    assert p.stdout == ''  # refused before the prompt was echoed or anything sampled


def test_long_prompt_is_cropped_with_a_warning(char_run):
    p = sample(char_run, '--out_dir=out', '--start=' + 'hello, world. ' * 10, '--num_samples=1',
               '--max_new_tokens=5')
    assert p.returncode == 0, p.stderr
    assert 'warning: the prompt has 140 tokens; the model sees only the last 32' in p.stderr


def test_sample_from_another_directory_uses_the_checkpoints_own_vocabulary(char_run, tmp_path):
    p = sample(tmp_path, f'--out_dir={char_run / "out"}', '--start=ROMEO:', '--num_samples=2', '--max_new_tokens=20')
    assert p.returncode == 0, p.stderr
    assert 'character vocabulary of 24' in p.stderr
    assert set(p.stdout) <= set(CHARS_TEXT + '-')


def test_old_checkpoint_without_its_dataset_is_an_error_not_gpt2_text(char_run, tmp_path):
    ckpt = files.load_pickle(char_run / 'out' / 'ckpt.pkl')
    del ckpt['tokenizer'], ckpt['config']['data_dir']  # as train.py wrote them before it kept the vocabulary
    files.save_pickle(tmp_path / 'old' / 'ckpt.pkl', ckpt)
    char_dataset(tmp_path / 'data' / 'chars')  # the dataset it names (data/chars) beside it
    p = sample(tmp_path, '--out_dir=old', '--num_samples=1', '--max_new_tokens=5')
    assert p.returncode == 0 and 'character vocabulary of 24' in p.stderr  # found in data/chars
    (tmp_path / 'data' / 'chars' / 'meta.pkl').unlink()
    p = sample(tmp_path, '--out_dir=old')
    assert_one_error_line(p, 'data/chars/meta.pkl not found')
    assert 'GPT-2' not in p.stderr


def test_output_piped_into_head_ends_quietly(char_run):
    p = subprocess.run(f'{sys.executable} {SAMPLE} --out_dir=out --num_samples=20 --max_new_tokens=200 | head -c 10',
                       shell=True, cwd=char_run, capture_output=True, text=True, timeout=300)
    assert len(p.stdout) == 10 and 'Traceback' not in p.stderr and 'BrokenPipe' not in p.stderr
