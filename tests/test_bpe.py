"""A dataset with a BPE of its own through the whole pipeline (prepare_owt.py, train.py,
sample.py), and bits per byte for every kind of dataset: characters, GPT-2's BPE, a BPE of its own.
Each val bpb is checked against bytes counted from the text itself."""
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiktoken

import files
import prepare_owt
import tokenizer
from helpers import assert_one_error_line, run_in_process

ROOT = Path(__file__).resolve().parent.parent  # the project folder
TINY = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=8',
        '--gradient_accumulation_steps=1', '--eval_iters=2', '--learning_rate=1e-2', '--warmup_iters=0',
        '--dtype=float32']
PHRASE = 'a naïve café au lait, '  # with a BPE of 270 tokens, "ï" is split over two merged tokens


def run(script, *args, cwd):
    env = dict(os.environ)
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def eval_records(out_dir):
    return [r for r in map(json.loads, open(out_dir / 'log.jsonl')) if 'val_loss' in r]


@pytest.fixture(scope='module')
def cafe(tmp_path_factory):
    """A working directory with data/cafe, PHRASE repeated under a BPE of 270 tokens trained on
    it, and out/, a model trained on it until it knows the phrase by heart."""
    cwd = tmp_path_factory.mktemp('cafe')
    (cwd / 'cafe.txt').write_text(PHRASE * 400, encoding='utf-8')
    prepare_owt.main([f'--input={cwd / "cafe.txt"}', '--split=tail', '--vocab_size=270', f'--out_dir={cwd / "data" / "cafe"}'])
    p = run('train.py', '--dataset=cafe', '--out_dir=out', *TINY, '--max_iters=100', '--eval_interval=100',
            '--log_interval=50', cwd=cwd)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return cwd


def test_train_and_sample_with_a_bpe_of_its_own_even_where_it_splits_a_character(cafe):
    meta = files.load_pickle(cafe / 'data' / 'cafe' / 'meta.pkl')
    bpe = tiktoken.Encoding('cafe', **meta['tokenizer'])  # tiktoken alone rebuilds it
    pieces = [bpe.decode_single_token_bytes(t) for t in bpe.encode_ordinary(PHRASE)]
    assert b'a\xc3' in pieces and b'\xafve' in pieces  # "ï" = c3 af, split over two tokens

    last = eval_records(cafe / 'out')[-1]
    assert last['val_bpb'] < 0.01 and last['val_loss'] < 0.02  # learnt by heart

    # one sample streams token by token, holding back the half of "ï"; two come as a batch
    streamed = run('sample.py', '--out_dir=out', '--start=a naïve', '--top_k=1', '--num_samples=1',
                   '--max_new_tokens=40', cwd=cafe)
    batch = run('sample.py', '--out_dir=out', '--start=a naïve', '--top_k=1', '--num_samples=2',
                '--max_new_tokens=40', cwd=cafe)
    assert streamed.returncode == 0 and batch.returncode == 0, streamed.stderr + batch.stderr
    assert 'tokens: BPE of 270 tokens from out/ckpt.pkl' in streamed.stderr
    text = streamed.stdout.split('\n---------------\n')[0]
    assert text.startswith((PHRASE * 4)[:60]) and '\ufffd' not in text
    assert text.count('naïve') >= 3  # the split character generated, and printed whole
    assert batch.stdout == f'{text}\n---------------\n' * 2


def test_bpb_is_loss_over_ln_2_on_ascii_characters(tmp_path):
    text = ''.join(f'line {i}: the quick brown fox jumps over the lazy dog.\n' for i in range(400))
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], np.uint16)
    d = tmp_path / 'data' / 'ascii'
    d.mkdir(parents=True)
    ids[:20_000].tofile(d / 'train.bin')
    ids[20_000:].tofile(d / 'val.bin')
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': stoi}, f)
    p = run('train.py', '--dataset=ascii', '--out_dir=out', *TINY, '--max_iters=20', '--eval_interval=10',
            '--log_interval=10', cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    records = eval_records(tmp_path / 'out')
    assert [r['iter'] for r in records] == [0, 10, 20]
    for r in records:  # one byte per token
        assert r['val_bpb'] == pytest.approx(r['val_loss'] / math.log(2), rel=1e-9)
        assert r['train_bpb'] == pytest.approx(r['train_loss'] / math.log(2), rel=1e-9)
        assert f"val loss {r['val_loss']:.4f}, val bpb {r['val_bpb']:.4f}, val perplexity" in p.stdout


@pytest.mark.parametrize('tokens', [pytest.param('gpt2', marks=pytest.mark.real_data), 'own'])
def test_bpb_counts_the_bytes_of_exactly_the_scored_tokens(tmp_path, tokens, request, capsys, monkeypatch):
    if tokens == 'gpt2':
        request.getfixturevalue('gpt2_bpe')  # skips without GPT-2's BPE files
    (tmp_path / 'c').mkdir()
    for i in range(3):
        (tmp_path / 'c' / f'{i}.txt').write_text(f'document {i}: ' + 'the cat sat on the mat. ' * 200)
    val_doc = '\nnaïve café — 日本語 ✓ ' * 3  # multi-byte characters: bytes, characters and tokens differ
    (tmp_path / 'c' / '3.txt').write_text(val_doc, encoding='utf-8')
    flags = ['--vocab_size=300'] if tokens == 'own' else []
    monkeypatch.chdir(tmp_path)
    p = run_in_process(capsys, prepare_owt.main, ['--input=c', '--out_dir=data/mix', *flags])
    assert p.returncode == 0, p.stderr
    meta = files.load_pickle(tmp_path / 'data' / 'mix' / 'meta.pkl')
    enc = tokenizer.bpe_encoding(meta['tokenizer'], 'meta.pkl')
    val = np.fromfile(tmp_path / 'data' / 'mix' / 'val.bin', np.uint16).tolist()
    assert enc.decode(val) == val_doc + '<|endoftext|>'  # the last document, moved to val
    assert enc.decode(val[:1]) == '\n'

    # with block_size = len(val) - 1 every evaluation window is the whole of val.bin, and its
    # targets are every token but the first: the document without its "\n", then end-of-text
    p = run('train.py', '--dataset=mix', '--out_dir=out', *TINY, f'--block_size={len(val) - 1}', '--n_embd=16',
            '--eval_only=True', cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    [r] = eval_records(tmp_path / 'out')
    scored_bytes = len(val_doc.encode('utf-8')) - 1
    assert r['val_bpb'] == pytest.approx(r['val_loss'] * (len(val) - 1) / (math.log(2) * scored_bytes), rel=1e-9)


def test_gpt2_weights_are_refused_on_a_dataset_with_its_own_vocabulary(cafe):
    p = run('train.py', '--dataset=cafe', '--out_dir=out-gpt2', *TINY, '--init_from=gpt2', '--max_iters=1', cwd=cafe)
    assert_one_error_line(p, 'has its own vocabulary of 270 tokens')
