"""HellaSwag, completion style: the batched, bucketed scorer against a plain loop over
model.forward for each kind of tokenizer, contexts past block_size, the download, bad input,
eval_hellaswag.py end to end, train.py --hellaswag_examples, and transformers' GPT-2."""
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import common
import hellaswag
import model
import tokenizer
from common import UserError
from helpers import CHARS_TEXT, assert_one_error_line, char_dataset, cut_off_server
from model import GPTConfig

ROOT = Path(__file__).resolve().parent.parent  # the project folder
FIXTURE = ROOT / 'tests' / 'fixtures' / 'hellaswag-tiny.jsonl'  # made-up examples in HellaSwag's format
RAW = [json.loads(line) for line in FIXTURE.read_text(encoding='utf-8').splitlines()]
LABELS = [e['label'] for e in RAW]
CHARS = sorted(set(''.join(e['ctx'] + ' ' + ' '.join(e['endings']) for e in RAW)))
STOI = {c: i for i, c in enumerate(CHARS)}


def run(script, *args, cwd, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def random_model(vocab_size, block_size=1024, seed=0):
    """A small GPT with random weights, drawn with numpy (no compilation of init_params per shape):
    large enough that the endings' scores differ clearly."""
    config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32)
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
    return jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(0, 0.3, a.shape), jnp.float32), shapes), config


def plain_scores(params, config, encode):
    """What the scorer must give, one example at a time: each of its 4 rows is ctx + ' ' + ending
    cut to its last block_size + 1 tokens, padded to the longest row of all (the model is causal:
    padding after a token does not change its logits), and the ending's tokens' cross-entropy is
    summed and averaged -> (sums, means, scored tokens), each [N, 4]."""
    forward = jax.jit(model.forward, static_argnames='config')
    rows = [[(encode(e['ctx']) + encode(' ' + ending))[-(config.block_size + 1):] for ending in e['endings']]
            for e in RAW]
    longest = max(len(row) - 1 for four in rows for row in four)
    sums, means, counts = np.zeros((len(RAW), 4)), np.zeros((len(RAW), 4)), np.zeros((len(RAW), 4), int)
    for i, e in enumerate(RAW):
        idx = np.zeros((4, longest), np.int32)
        for j, row in enumerate(rows[i]):
            idx[j, :len(row) - 1] = row[:-1]
        logp = np.asarray(jax.nn.log_softmax(forward(params, jnp.asarray(idx), config), axis=-1), np.float64)
        for j, (row, ending) in enumerate(zip(rows[i], e['endings'])):
            nats = -logp[j, np.arange(len(row) - 1), row[1:]]  # each token given the ones before it
            k = min(len(encode(' ' + ending)), config.block_size)
            sums[i, j], means[i, j], counts[i, j] = nats[-k:].sum(), nats[-k:].mean(), k
    return sums, means, counts


def check_against_plain_loop(params, config, tok, encode):
    examples = hellaswag.load_examples(FIXTURE)
    rows = hellaswag.tokenize(examples, tok, config, 'the fixture', 'no fix')
    compiled = hellaswag.ending_nats._cache_size()
    r = hellaswag.results(hellaswag.score(params, config, rows), rows, [e.label for e in examples])
    shapes = {(x.shape, pos.shape) for _, x, pos, _ in hellaswag.batches(rows, config)}
    assert hellaswag.ending_nats._cache_size() - compiled <= len(shapes)  # once per shape at most
    sums, means, counts = plain_scores(params, config, encode)
    np.testing.assert_array_equal(rows.scored.reshape(-1, 4), counts)
    np.testing.assert_allclose(r.sums, sums, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(r.means, means, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(r.pred, sums.argmin(1))
    np.testing.assert_array_equal(r.pred_norm, means.argmin(1))
    assert r.acc == np.mean(sums.argmin(1) == LABELS) and r.acc_norm == np.mean(means.argmin(1) == LABELS)
    assert len(set(r.pred_norm)) > 1  # a meaningful check: not one answer throughout
    return rows, r


# ----------------------------------------------------------------------------- scores, for each tokenizer

def test_character_model_scores_equal_a_plain_loop():
    params, config = random_model(len(CHARS))
    rows, _ = check_against_plain_loop(params, config, tokenizer.characters(STOI, 'test'), lambda s: [STOI[c] for c in s])
    assert rows.cut_endings == 0 and max(len(t) for t in rows.tokens) > 400  # the long contexts are whole


def own_bpe():
    """A byte-level BPE with a handful of merges, as prepare_owt.py --vocab_size records one."""
    ranks = {bytes([b]): b for b in range(256)}
    for merged in (b'th', b'he', b' t', b' the', b'in', b'ing', b'an', b' a', b'nd', b' and', b'er', b'e '):
        ranks[merged] = len(ranks)
    parts = {'pat_str': r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
             'mergeable_ranks': ranks, 'special_tokens': {'<|endoftext|>': len(ranks)}}
    return {'vocab_size': len(ranks) + 1, 'tokenizer': parts}


def test_own_bpe_model_scores_equal_a_plain_loop():
    import tiktoken
    meta = own_bpe()
    enc = tiktoken.Encoding('test', **{k: meta['tokenizer'][k] for k in ('pat_str', 'mergeable_ranks', 'special_tokens')})
    assert len(enc.encode(' the thing')) < len(' the thing')  # its merges are used
    params, config = random_model(meta['vocab_size'])
    check_against_plain_loop(params, config, tokenizer.from_meta(meta, 'test/meta.pkl'), enc.encode)


def test_gpt2_bpe_model_scores_equal_a_plain_loop(gpt2_bpe):
    params, config = random_model(tokenizer.GPT2_PADDED_VOCAB, block_size=256)
    check_against_plain_loop(params, config, tokenizer.from_meta({}, 'gpt2'), gpt2_bpe.encode)


def test_contexts_longer_than_block_size_keep_their_last_tokens():
    tok, encode = tokenizer.characters(STOI, 'test'), lambda s: [STOI[c] for c in s]
    for block_size in (24, 96):  # every row cut; the long contexts cut, most endings whole
        params, config = random_model(len(CHARS), block_size)
        rows, _ = check_against_plain_loop(params, config, tok, encode)
        assert max(len(t) for t in rows.tokens) == block_size + 1
        assert rows.cut_endings == sum(len(' ' + ending) > block_size for e in RAW for ending in e['endings']) > 0


def test_batches_have_a_few_fixed_shapes_and_hold_every_row_once():
    config = GPTConfig(block_size=1024, vocab_size=50304)
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 1026, 500)  # tokens per row: inputs and their next tokens
    scored = np.minimum(rng.integers(1, 50, 500), lengths - 1)
    rows = hellaswag.Rows([rng.integers(1, 100, n).astype(np.int32) for n in lengths], scored, 0)
    seen, sizes = [], {}
    for index, x, pos, y in hellaswag.batches(rows, config):
        (B, T), W = x.shape, pos.shape[1]
        assert pos.shape == y.shape == (B, W) and W <= T and {T, W} <= {32, 64, 128, 256, 512, 1024}
        sizes.setdefault((T, W), []).append(B)
        for r, i in enumerate(index):
            if i < 0:  # an empty row: nothing scored
                assert (y[r] == -1).all()
                continue
            seen.append(i)
            n, k = lengths[i] - 1, scored[i]
            assert n <= T and k <= W and (T == 32 or n > T // 2) and (W == 32 or k > W // 2)  # the shortest that fit
            np.testing.assert_array_equal(x[r, :n], rows.tokens[i][:-1])
            assert (x[r, n:] == 0).all()
            np.testing.assert_array_equal(pos[r, :k], np.arange(n - k, n))  # the logits there predict ...
            np.testing.assert_array_equal(y[r, :k], rows.tokens[i][-k:])  # ... the ending's tokens
            assert (y[r, k:] == -1).all()
    assert sorted(seen) == list(range(500))
    assert len(sizes) == 11  # (T, W): 6 lengths of rows x 2 of endings (up to 49 tokens), but not (32, 64)
    for (T, W), Bs in sizes.items():  # one size of batch for each, and a last one of a power of two up to it
        assert len(set(Bs[:-1])) <= 1 and (Bs[-1] == Bs[0] or Bs[-1] < Bs[0] and Bs[-1] & (Bs[-1] - 1) == 0)
        assert Bs[0] * T <= hellaswag.BATCH_TOKENS or Bs[0] == 1
        assert Bs[0] * W * 50304 * 4 <= hellaswag.LOGITS_BYTES


# ----------------------------------------------------------------------------- the download

def test_validation_set_is_downloaded_once_and_a_cut_download_resumes(http_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common, 'ROOT', str(tmp_path))  # data/ is this folder's, whatever the checkout holds
    data = FIXTURE.read_bytes()
    (http_server.root / 'hellaswag_val.jsonl').write_bytes(data)
    folder = tmp_path / 'data' / 'hellaswag'
    server = cut_off_server(data)
    try:
        with pytest.raises(UserError, match='could not download .*run again to resume.*--input=FILE'):
            hellaswag.fetch_val(f'http://127.0.0.1:{server.server_address[1]}/hellaswag_val.jsonl')
    finally:
        server.shutdown()
        server.server_close()
    assert os.listdir(folder) == ['hellaswag_val.jsonl.part']  # never a partial file under the real name

    url = f'{http_server.url}/hellaswag_val.jsonl'
    assert hellaswag.fetch_val(url) == os.path.join('data', 'hellaswag', 'hellaswag_val.jsonl')
    assert http_server.seen == [('GET', '/hellaswag_val.jsonl', f'bytes={len(data) // 2}-')]  # only the rest
    assert (folder / 'hellaswag_val.jsonl').read_bytes() == data and os.listdir(folder) == ['hellaswag_val.jsonl']
    assert len(hellaswag.load_examples(hellaswag.fetch_val(url))) == len(RAW)
    assert len(http_server.seen) == 1  # the second time, no request
    os.remove(folder / 'hellaswag_val.jsonl')
    with pytest.raises(UserError, match='not found, and a run of several processes does not download it'):
        hellaswag.fetch_val(url, download=False)


# ----------------------------------------------------------------------------- bad input

def write_lines(path, *examples):
    path.write_text(''.join((e if isinstance(e, str) else json.dumps(e)) + '\n' for e in examples), encoding='utf-8')
    return path


GOOD = {'ctx': 'A cat sits.', 'endings': ['a', 'b', 'c', 'd'], 'label': 1}


@pytest.mark.parametrize('bad, words', [
    ({'endings': ['a', 'b', 'c', 'd'], 'label': 0}, ['line 2 has no ctx', 'endings (4 texts)']),
    ({'ctx': 'x', 'label': 0}, ['line 2 has no endings']),
    ({'ctx': 'x', 'endings': ['a', 'b', 'c', 'd']}, ['line 2 has no label', "test split has no labels"]),
    ({**GOOD, 'label': 4}, ['line 2: label must be 0, 1, 2 or 3', 'not 4']),
    ({**GOOD, 'label': -1}, ['label must be 0, 1, 2 or 3', 'not -1']),
    ({**GOOD, 'label': '1'}, ['label must be 0, 1, 2 or 3', "not '1'"]),
    ({**GOOD, 'label': True}, ['label must be 0, 1, 2 or 3', 'not True']),
    ({**GOOD, 'endings': ['a', 'b', 'c']}, ['line 2: endings must be a list of 4 texts', '["a", "b", "c"]']),
    ({**GOOD, 'endings': ['a', 'b', 'c', 4]}, ['endings must be a list of 4 texts']),
    ({**GOOD, 'endings': 'abcd'}, ['endings must be a list of 4 texts']),
    ({**GOOD, 'ctx': ''}, ['line 2: ctx must be a text of at least one character']),
    ({**GOOD, 'ctx': 7}, ['ctx must be a text']),
    ('{"ctx": "x", ', ['line 2 is not JSON', 'each line one JSON object']),
    ('[1, 2, 3]', ['line 2 is a JSON list, not an object']),
])
def test_bad_examples_raise_one_clear_error(tmp_path, bad, words):
    path = write_lines(tmp_path / 'bad.jsonl', GOOD, bad, GOOD)
    with pytest.raises(UserError) as e:
        hellaswag.load_examples(str(path))
    assert '\n' not in str(e.value) and str(e.value).startswith(str(path))
    for word in words:
        assert word in str(e.value)


def test_bad_files_raise_one_clear_error(tmp_path):
    cases = [(tmp_path / 'nowhere.jsonl', ['not found', '--input=FILE']), (tmp_path, ['is a folder', '--input=FILE']),
             (write_lines(tmp_path / 'empty.jsonl'), ['holds no examples']),
             (write_lines(tmp_path / 'blank.jsonl', '', '  '), ['holds no examples'])]
    (tmp_path / 'latin1.jsonl').write_bytes(json.dumps(GOOD).replace('cat', 'caf\xe9').encode('latin-1'))
    cases.append((tmp_path / 'latin1.jsonl', ['is not UTF-8 text']))
    for path, words in cases:
        with pytest.raises(UserError) as e:
            hellaswag.load_examples(str(path))
        assert all(word in str(e.value) for word in words), str(e.value)


def test_max_examples_reads_only_the_first_ones(tmp_path):
    path = write_lines(tmp_path / 'x.jsonl', GOOD, '', {**GOOD, 'label': 2}, 'not read: past max_examples')
    assert [(e.line, e.label) for e in hellaswag.load_examples(str(path), 2)] == [(1, 1), (3, 2)]
    with pytest.raises(UserError, match='line 4 is not JSON'):
        hellaswag.load_examples(str(path))


def test_characters_the_vocabulary_lacks_are_all_named_at_once():
    examples = hellaswag.load_examples(FIXTURE)
    lacking = {'[', ']', 'W', 'z'}
    tok = tokenizer.characters({c: i for i, c in enumerate(c for c in CHARS if c not in lacking)}, 'out/ckpt.pkl')
    with pytest.raises(UserError) as e:
        hellaswag.tokenize(examples, tok, GPTConfig(vocab_size=len(CHARS)), 'val.jsonl', 'the fix')
    message = str(e.value)
    having = [n for n, e in enumerate(RAW, 1) if lacking & set(e['ctx'] + ' '.join(e['endings']))]
    assert message.startswith(f'{len(having)} of the 8 examples of val.jsonl (the first at line {having[0]}) have '
                              f"characters that the model's character vocabulary of {len(CHARS) - 4} from "
                              f'out/ckpt.pkl lacks')
    assert "'W[]z'" in message and message.endswith('; the fix') and '\n' not in message


def test_tokens_past_the_models_vocabulary_are_refused():
    examples = hellaswag.load_examples(FIXTURE)
    tok = tokenizer.characters(STOI, 'test')
    with pytest.raises(UserError, match=r"val.jsonl has token 48 with .*past the model's vocabulary of 40 tokens: the fix"):
        hellaswag.tokenize(examples, tok, GPTConfig(vocab_size=40), 'val.jsonl', 'the fix')


# ----------------------------------------------------------------------------- eval_hellaswag.py

def write_checkpoint(out_dir, params, config, stoi=STOI):
    """out_dir/ckpt.pkl as train.py writes it, with what eval_hellaswag.py reads: the model and its vocabulary."""
    out_dir.mkdir()
    with open(out_dir / 'ckpt.pkl', 'wb') as f:
        pickle.dump({'params': jax.tree_util.tree_map(np.asarray, params), 'model_args': asdict(config),
                     'config': {'dataset': 'chars'},
                     'tokenizer': {'vocab_size': len(stoi), 'stoi': stoi, 'itos': {i: c for c, i in stoi.items()}}}, f)


def test_script_prints_acc_and_writes_every_prediction(tmp_path):
    params, config = random_model(len(CHARS), block_size=128)
    write_checkpoint(tmp_path / 'out', params, config)
    p = run('eval_hellaswag.py', '--out_dir=out', f'--input={FIXTURE}', '--dtype=float32', '--max_examples=6',
            '--out_json=results/predictions.json', cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # the same numbers as the module's, in process
    examples = hellaswag.load_examples(FIXTURE, 6)
    rows = hellaswag.tokenize(examples, tokenizer.characters(STOI, 'test'), config, 'x', 'x')
    r = hellaswag.results(hellaswag.score(params, config, rows), rows, LABELS[:6])
    assert p.stdout.splitlines()[-1] == f'hellaswag: 6 examples, acc {r.acc:.4f}, acc_norm {r.acc_norm:.4f}'
    assert re.search(r'hellaswag: 100%\|.*\[\d+:\d\d<\d+:\d\d', p.stderr)  # the bar, with elapsed<time left
    assert 'endings are longer than block_size (128 tokens)' in p.stderr
    report = json.loads((tmp_path / 'results' / 'predictions.json').read_text())
    assert (report['examples'], report['acc'], report['acc_norm']) == (6, r.acc, r.acc_norm)
    got = report['predictions']
    assert [(g['line'], g['ind'], g['label']) for g in got] == [(i + 1, e['ind'], e['label']) for i, e in enumerate(RAW[:6])]
    np.testing.assert_allclose([g['sum_loss'] for g in got], r.sums, rtol=1e-6)
    np.testing.assert_allclose([g['mean_loss'] for g in got], r.means, rtol=1e-6)
    assert [g['pred_norm'] for g in got] == r.pred_norm.tolist() and [g['pred'] for g in got] == r.pred.tolist()
    assert [g['tokens'] for g in got] == rows.scored.reshape(-1, 4).tolist()


def test_script_errors_are_one_line(tmp_path):
    params, config = random_model(len(CHARS) - 5, block_size=64)
    write_checkpoint(tmp_path / 'out', params, config, {c: i for i, c in enumerate(CHARS[5:])})  # no " ',.;"
    p = run('eval_hellaswag.py', '--out_dir=out', f'--input={FIXTURE}', cwd=tmp_path)
    assert_one_error_line(p, 'of the 8 examples', "lacks: \" ',.;\"", 'pass --input=FILE with examples written in its')
    p = run('eval_hellaswag.py', '--out_dir=out', '--input=nowhere.jsonl', cwd=tmp_path)
    assert_one_error_line(p, 'nowhere.jsonl not found', '--input=FILE')
    p = run('eval_hellaswag.py', '--out_dir=out', '--max_examples=-1', cwd=tmp_path)
    assert_one_error_line(p, 'max_examples must be at least 0')


# ----------------------------------------------------------------------------- train.py --hellaswag_examples

TRAIN = ['--dataset=chars', '--out_dir=out', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32',
         '--batch_size=8', '--gradient_accumulation_steps=1', '--eval_iters=2', '--learning_rate=1e-2',
         '--warmup_iters=0', '--log_interval=2', '--dtype=float32']


def test_training_logs_acc_norm_at_each_evaluation(tmp_path):
    text = ''.join(e['ctx'] + ' ' + ' '.join(e['endings']) + '\n' for e in RAW) * 20  # every character of the examples
    char_dataset(tmp_path / 'data' / 'chars', text, val_from=len(text) * 9 // 10)
    (tmp_path / 'data' / 'hellaswag').mkdir()
    shutil.copy(FIXTURE, tmp_path / 'data' / 'hellaswag' / 'hellaswag_val.jsonl')
    p = run('train.py', *TRAIN, '--max_iters=4', '--eval_interval=2', '--hellaswag_examples=5', cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    records = [r for r in map(json.loads, open(tmp_path / 'out' / 'log.jsonl')) if 'val_loss' in r]
    assert [r['iter'] for r in records] == [0, 2, 4]
    assert all(r['hellaswag'] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) for r in records)  # acc_norm of 5 examples
    assert f"hellaswag {records[-1]['hellaswag']:.4f}" in [l for l in p.stdout.splitlines() if l.startswith('step 4/')][0]
    # the last one is acc_norm of the model saved at that evaluation
    with open(tmp_path / 'out' / 'ckpt.pkl', 'rb') as f:
        ckpt = pickle.load(f)
    config = GPTConfig(**ckpt['model_args'])
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    examples = hellaswag.load_examples(FIXTURE, 5)
    rows = hellaswag.tokenize(examples, tokenizer.characters(stoi, 'test'), config, 'x', 'x')
    assert records[-1]['hellaswag'] == hellaswag.results(hellaswag.score(ckpt['params'], config, rows), rows,
                                                         LABELS[:5]).acc_norm


def test_training_refuses_a_vocabulary_without_the_examples_characters(tmp_path):
    char_dataset(tmp_path / 'data' / 'chars', CHARS_TEXT)
    (tmp_path / 'data' / 'hellaswag').mkdir()
    shutil.copy(FIXTURE, tmp_path / 'data' / 'hellaswag' / 'hellaswag_val.jsonl')
    p = run('train.py', *TRAIN, '--max_iters=2', '--hellaswag_examples=3', cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.splitlines()[-1].startswith('error: 3 of the 3 examples of '), p.stderr
    assert 'lacks' in p.stderr and 'leave hellaswag_examples at 0' in p.stderr and 'Traceback' not in p.stderr
    assert not (tmp_path / 'out').exists()  # stopped at its start: no run folder left behind


# ----------------------------------------------------------------------------- transformers' GPT-2

@pytest.mark.transformers
def test_scores_equal_transformers_gpt2_from_the_same_folder(tmp_path):
    torch = pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=len(CHARS), n_positions=1024,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))  # off the init: LayerNorms and biases matter too
    folder = tmp_path / 'gpt2-chars'
    hf.save_pretrained(folder)
    (folder / 'chars.json').write_text(json.dumps(STOI))  # export.py's record of a character vocabulary
    p = run('eval_hellaswag.py', f'--init_from={folder}', f'--input={FIXTURE}', '--dtype=float32',
            '--out_json=out.json', cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    got = json.loads((tmp_path / 'out.json').read_text())['predictions']
    # transformers' own numbers, as llm.c computes them: the rows padded, the loss masked to the ending
    sums, means = np.zeros((len(RAW), 4)), np.zeros((len(RAW), 4))
    for i, e in enumerate(RAW):
        ctx = [STOI[c] for c in e['ctx']]
        rows = [ctx + [STOI[c] for c in ' ' + ending] for ending in e['endings']]
        tokens = torch.zeros((4, max(map(len, rows))), dtype=torch.long)
        mask = torch.zeros_like(tokens)
        for j, row in enumerate(rows):
            tokens[j, :len(row)] = torch.tensor(row)
            mask[j, len(ctx):len(row)] = 1
        with torch.no_grad():
            logits = hf(tokens).logits
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                   tokens[:, 1:].reshape(-1), reduction='none').view(4, -1)
        sums[i] = (losses * mask[:, 1:]).sum(1).double().numpy()
        means[i] = sums[i] / mask[:, 1:].sum(1).numpy()
    np.testing.assert_allclose([g['sum_loss'] for g in got], sums, rtol=1e-5)
    np.testing.assert_allclose([g['mean_loss'] for g in got], means, rtol=1e-5)
    acc, acc_norm = np.mean(sums.argmin(1) == LABELS), np.mean(means.argmin(1) == LABELS)
    assert p.stdout.splitlines()[-1] == f'hellaswag: 8 examples, acc {acc:.4f}, acc_norm {acc_norm:.4f}'
