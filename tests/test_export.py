"""export.py: a checkpoint in transformers' GPT-2 format, loaded back by model.from_pretrained
(and, where torch and transformers are installed, by transformers itself)."""
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import checkpoint
import datafiles
import files
from helpers import assert_one_error_line, run_script_in_process, train_char_model
import model
from model import GPTConfig

ROOT = Path(__file__).resolve().parent.parent  # the project folder
EXPORT = str(ROOT / 'export.py')
FIXTURE = ROOT / 'tests' / 'fixtures' / 'gpt2-tiny'  # written by transformers (make_gpt2_fixture.py)
CFG = GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=32)
CHARS = {'vocab_size': 37, 'stoi': {chr(ord('A') + i): i for i in range(37)},
         'itos': {i: chr(ord('A') + i) for i in range(37)}}


def random_params(config, seed=0):
    # random values in every tensor (not init's zero biases and unit gains), so that a tensor
    # written under the wrong name or in the wrong layout changes the logits
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
    return jax.tree_util.tree_map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


def save_run(out_dir, config, params=None, **extra):
    """A checkpoint as train.py writes it (the parts export.py reads) -> its params."""
    params = random_params(config) if params is None else params
    files.save_pickle(out_dir / 'ckpt.pkl', {'params': params, 'model_args': asdict(config), 'iter_num': 7,
                                              'config': {'dataset': 'test'}, **extra})
    return params


def export(cwd, *args):
    return subprocess.run([sys.executable, EXPORT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def safetensors_header(path):  # the JSON header of a .safetensors file: names, dtypes, shapes, offsets
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        return json.loads(f.read(n))


def assert_same_params(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


def logits(params, config):  # of token ids that every vocabulary here has
    idx = jax.random.randint(jax.random.key(0), (2, config.block_size), 0, CFG.vocab_size)
    return np.asarray(model.forward(jax.tree_util.tree_map(jnp.asarray, params), idx, config))


@pytest.fixture
def gpt2_encoding(gpt2_bpe):
    """tiktoken's GPT-2 encoding, from the files conftest's gpt2_bpe finds (also for export.py)."""
    return gpt2_bpe


# ----------------------------------------------------------------------------- round trips

def test_export_loads_back_to_identical_parameters_and_logits(tmp_path):
    params = save_run(tmp_path / 'out', CFG, tokenizer=CHARS)
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    assert "load it: transformers.GPT2LMHeadModel.from_pretrained('hf')" in p.stdout
    assert sorted(os.listdir(tmp_path / 'hf')) == ['chars.json', 'config.json', 'model.safetensors']
    assert sorted(os.listdir(tmp_path)) == ['hf', 'out']  # no temporary folder left beside it
    # every file with the permissions a new file gets here (the weights too), the folder a new folder's
    (tmp_path / 'new-file').touch()
    (tmp_path / 'new-folder').mkdir()
    mode = lambda path: os.stat(path).st_mode & 0o777
    assert {name: mode(tmp_path / 'hf' / name) for name in os.listdir(tmp_path / 'hf')} == \
        dict.fromkeys(['chars.json', 'config.json', 'model.safetensors'], mode(tmp_path / 'new-file'))
    assert mode(tmp_path / 'hf') == mode(tmp_path / 'new-folder')
    loaded, config = model.from_pretrained(str(tmp_path / 'hf'))
    assert config == CFG
    assert_same_params(loaded, params)
    np.testing.assert_array_equal(logits(loaded, config), logits(params, CFG))
    assert json.loads((tmp_path / 'hf' / 'chars.json').read_text()) == CHARS['stoi']


def test_export_of_transformers_weights_is_transformers_file_byte_for_byte(tmp_path):
    # the tiny fixture, read into a checkpoint and exported again: the same tensors under the same
    # names, shapes, dtypes and offsets, and config.json has transformers' fields and values
    params, config = model.from_pretrained(str(FIXTURE))
    save_run(tmp_path / 'out', config, jax.tree_util.tree_map(np.asarray, params))
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    ours, theirs = tmp_path / 'hf' / 'model.safetensors', FIXTURE / 'model.safetensors'
    assert safetensors_header(ours) == safetensors_header(theirs)
    assert ours.read_bytes() == theirs.read_bytes()
    written = json.loads((tmp_path / 'hf' / 'config.json').read_text())
    reference = json.loads((FIXTURE / 'config.json').read_text())
    del reference['transformers_version']  # written by transformers about itself
    # a model without a recorded vocabulary has no end-of-text token (GPT2Config's default is GPT-2's)
    assert written == {**reference, 'bos_token_id': None, 'eos_token_id': None}


def test_random_model_has_transformers_tensor_names_and_shapes(tmp_path):
    # a new model of the fixture's shape: the same tensors in the header as transformers writes
    config = GPTConfig(block_size=32, vocab_size=101, n_layer=2, n_head=4, n_embd=64)
    save_run(tmp_path / 'out', config)
    assert export(tmp_path, '--out_dir=out', '--to=hf').returncode == 0
    layout = lambda header: {k: (v['dtype'], v['shape']) for k, v in header.items() if k != '__metadata__'}
    ours = safetensors_header(tmp_path / 'hf' / 'model.safetensors')
    theirs = safetensors_header(FIXTURE / 'model.safetensors')
    assert layout(ours) == layout(theirs) and ours['__metadata__'] == theirs['__metadata__'] == {'format': 'pt'}


def test_bias_false_model_gets_zero_biases_and_the_same_logits(tmp_path):
    config = replace(CFG, bias=False)
    params = save_run(tmp_path / 'out', config, tokenizer=CHARS)
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    assert 'no biases (bias=False)' in p.stdout and 'written as zeros' in p.stdout
    header = safetensors_header(tmp_path / 'hf' / 'model.safetensors')
    assert 'transformer.h.1.mlp.c_fc.bias' in header and 'transformer.ln_f.bias' in header
    loaded, loaded_config = model.from_pretrained(str(tmp_path / 'hf'))
    assert loaded_config == replace(config, bias=True)
    flat = lambda tree: {jax.tree_util.keystr(path): a for path, a in jax.tree_util.tree_leaves_with_path(tree)}
    theirs, ours = flat(loaded), flat(params)
    assert len(set(theirs) - set(ours)) == 7  # 4 Linears, 3 LayerNorms
    for name in set(theirs) - set(ours):
        assert name.endswith("['bias']") and not np.any(theirs[name])
    for name in ours:
        np.testing.assert_array_equal(theirs[name], ours[name])
    np.testing.assert_array_equal(logits(loaded, loaded_config), logits(params, config))


def test_gpt2_bpe_model_is_cut_to_50257_tokens_with_gpt2_tokenizer_files(tmp_path, gpt2_encoding):
    config = GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=16)
    params = save_run(tmp_path / 'out', config, tokenizer={'tokenizer': 'gpt2'})
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    assert 'cut from 50,304 rows' in p.stdout
    hf = tmp_path / 'hf'
    loaded, loaded_config = model.from_pretrained(str(hf))
    assert loaded_config == replace(config, vocab_size=50257)
    assert_same_params(loaded, {**params, 'wte': params['wte'][:50257]})
    np.testing.assert_array_equal(logits(loaded, loaded_config), logits(params, config)[..., :50257])
    hf_config = json.loads((hf / 'config.json').read_text())
    assert hf_config['bos_token_id'] == hf_config['eos_token_id'] == gpt2_encoding.eot_token == 50256
    # vocab.json and merges.txt write token bytes in GPT-2's printable characters
    chars = {c: b for b, c in byte_to_unicode().items()}
    as_bytes = lambda text: bytes(chars[c] for c in text)
    vocab = json.loads((hf / 'vocab.json').read_text(encoding='utf-8'))
    assert vocab['!'] == 0 and vocab['\u0120the'] == 262 and vocab['<|endoftext|>'] == 50256  # 'Ġthe': ' the'
    assert {as_bytes(t): i for t, i in vocab.items()} == \
        {gpt2_encoding.decode_single_token_bytes(i): i for i in range(50257)}
    lines = (hf / 'merges.txt').read_text(encoding='utf-8').split('\n')
    assert lines[0] == '#version: 0.2' and lines[-1] == '' and len(lines) == 50002
    for rank, line in enumerate(lines[1:-1], start=256):  # merge k makes token 256 + k
        a, b = line.split(' ')
        assert gpt2_encoding.decode_single_token_bytes(rank) == as_bytes(a) + as_bytes(b)
    tokenizer_config = json.loads((hf / 'tokenizer_config.json').read_text())
    assert tokenizer_config['eos_token'] == '<|endoftext|>' and tokenizer_config['model_max_length'] == 16


def byte_to_unicode():
    # GPT-2's map, by its definition: printable Latin-1 bytes other than the space stand for
    # themselves, the other 68 bytes, in order, for chr(256), chr(257), ...
    printable = [b for b in range(256) if chr(b).isprintable() and b not in (0x20, 0xa0, 0xad)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def test_own_bpe_vocabulary_is_written_as_tiktoken_json(tmp_path):
    import base64
    import tiktoken
    ranks = {bytes([b]): b for b in range(256)} | {b'ab': 256, b'abc': 257}
    parts = {'pat_str': r"\S+|\s+", 'mergeable_ranks': ranks, 'special_tokens': {'<|endoftext|>': 258}}
    config = replace(CFG, vocab_size=259)
    save_run(tmp_path / 'out', config, tokenizer={'vocab_size': 259, 'tokenizer': parts})
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    assert "tiktoken.json: the dataset's own BPE of 259 tokens" in p.stdout
    own = json.loads((tmp_path / 'hf' / 'tiktoken.json').read_text())
    enc = tiktoken.Encoding('own', pat_str=own['pat_str'], special_tokens=own['special_tokens'],
                            mergeable_ranks={base64.b64decode(t): r for t, r in own['mergeable_ranks'].items()})
    assert enc.encode('abc ab<|endoftext|>', allowed_special='all') == [257, 32, 256, 258]
    assert json.loads((tmp_path / 'hf' / 'config.json').read_text())['vocab_size'] == 259


# ----------------------------------------------------------------------------- bad inputs and atomic writes

def export_in_process(capsys, monkeypatch, cwd, *args):
    """export.py run in this process (what it prints and its exit status), from cwd."""
    monkeypatch.chdir(cwd)
    return run_script_in_process(capsys, EXPORT, *args)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    save_run(tmp_path / 'out', CFG, tokenizer=CHARS)
    params = random_params(CFG)
    params['h']['attn']['c_attn']['weight'] = params['h']['attn']['c_attn']['weight'][:, :, :8]
    save_run(tmp_path / 'broken', CFG, params)
    (tmp_path / 'file').write_text('x')
    # the script wires each kind up: a setting, the checkpoint, the folder to write
    assert_one_error_line(export(tmp_path, '--out_dir=out'), 'give the folder to write: --to=DIR')
    assert_one_error_line(export(tmp_path, '--out_dir=broken', '--to=hf'),
                          'h.attn.c_attn.weight is float32 (2, 32, 8), expected float32 (2, 32, 96)')
    assert_one_error_line(export(tmp_path, '--out_dir=out', '--to=file/sub'), 'a part of that path is a file')
    # the rest in this process: the same script, the same one line and exit status
    run = lambda *args, cwd=tmp_path: export_in_process(capsys, monkeypatch, cwd, *args)
    assert_one_error_line(run('--out_dir=out', '--too=hf'), "unknown key 'too'", "did you mean 'to'?")
    assert_one_error_line(run('--out_dir=nowhere', '--to=hf'), 'no checkpoint at nowhere/ckpt.pkl')
    (tmp_path / 'foreign').mkdir()
    with open(tmp_path / 'foreign' / 'ckpt.pkl', 'wb') as f:
        pickle.dump({'something': 'else'}, f)
    assert_one_error_line(run('--out_dir=foreign', '--to=hf'), 'not a checkpoint written by train.py')
    # models that transformers' GPT-2 cannot express (a setting our GPT has no field for, an untied
    # head) are not models of this train.py either: checkpoint.load_run names what is extra
    files.save_pickle(tmp_path / 'rotary' / 'ckpt.pkl', {'params': random_params(CFG), 'config': {},
                                                          'model_args': {**asdict(CFG), 'rotary': True}})
    assert_one_error_line(run('--out_dir=rotary', '--to=hf'), 'model_args', "'rotary'")
    save_run(tmp_path / 'untied', CFG, {**random_params(CFG), 'lm_head': np.zeros((37, 32), np.float32)})
    assert_one_error_line(run('--out_dir=untied', '--to=hf'), 'holds params that the model has no place for: lm_head')
    # hand-edited: a string for the run's config
    files.save_pickle(tmp_path / 'edited' / 'ckpt.pkl', {'params': random_params(CFG), 'config': 'chars',
                                                          'model_args': asdict(CFG)})
    assert_one_error_line(run('--out_dir=edited', '--to=hf'), 'its config is a str, not a dict')
    assert_one_error_line(run('--out_dir=out', '--to=file'), 'file is a file, not a folder')
    assert_one_error_line(run('--out_dir=out', '--to=file/sub/deeper'), 'file/sub cannot be made: a part of that path is a file')
    assert_one_error_line(run('--out_dir=out', '--to=out', '--force=True'),  # would delete the checkpoint
                          'out holds the checkpoint to export: --force=True would delete it')
    assert_one_error_line(run('--out_dir=.', '--to=..', '--force=True', cwd=tmp_path / 'out'), 'holds the checkpoint')
    assert sorted(os.listdir(tmp_path)) == ['broken', 'edited', 'file', 'foreign', 'out', 'rotary', 'untied']


@pytest.mark.parametrize('stoi', [{**CHARS['stoi'], 'A': 'x'}, {**CHARS['stoi'], 'A': 1.5}, list(CHARS['stoi'])])
def test_a_vocabulary_that_is_not_character_ids_is_refused_with_nothing_written(tmp_path, capsys, monkeypatch, stoi):
    # a hand-edited vocabulary: 'x' made int() fail with a traceback, 1.5 was written as id 1
    save_run(tmp_path / 'out', CFG, tokenizer={**CHARS, 'stoi': stoi})
    assert_one_error_line(export_in_process(capsys, monkeypatch, tmp_path, '--out_dir=out', '--to=hf'),
                          'out/ckpt.pkl holds no vocabulary of characters')
    assert sorted(os.listdir(tmp_path)) == ['out']


def test_non_empty_folder_needs_force_and_is_then_replaced_whole(tmp_path):
    save_run(tmp_path / 'out', CFG, tokenizer=CHARS)
    (tmp_path / 'hf').mkdir()
    assert export(tmp_path, '--out_dir=out', '--to=hf').returncode == 0  # an empty folder is fine
    (tmp_path / 'hf' / 'vocab.json').write_text('{}')  # as if from an older GPT-2 BPE export
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert_one_error_line(p, 'hf is not empty: choose another --to, or replace that folder as a whole with --force=True')
    assert (tmp_path / 'hf' / 'vocab.json').exists()
    p = export(tmp_path, '--out_dir=out', '--to=hf', '--force=True')
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / 'hf')) == ['chars.json', 'config.json', 'model.safetensors']
    assert sorted(os.listdir(tmp_path)) == ['hf', 'out']


KILLED_WRITER = '''
import os, signal, sys, files
with files.atomic_folder(sys.argv[1], replace=True) as tmp:
    open(os.path.join(tmp, 'config.json'), 'w').write('new')
    os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of writing the folder
'''


def test_a_killed_export_leaves_the_old_folder_or_none(tmp_path):
    dest = tmp_path / 'hf'
    for before in (None, 'old'):
        if before:
            dest.mkdir()
            (dest / 'config.json').write_text(before)
        p = subprocess.run([sys.executable, '-c', KILLED_WRITER, str(dest)], cwd=ROOT)
        assert p.returncode == -signal.SIGKILL
        assert (dest / 'config.json').read_text() == before if before else not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.hf.')]  # the killed writer's
    with files.atomic_folder(dest, replace=True) as tmp:  # the next write removes what it left
        (Path(tmp) / 'config.json').write_text('new')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['hf'] and (dest / 'config.json').read_text() == 'new'
    with pytest.raises(ZeroDivisionError):  # an error in the middle: nothing written, nothing left
        with files.atomic_folder(tmp_path / 'other') as tmp:
            (Path(tmp) / 'config.json').write_text('x')
            1 / 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['hf']


# ----------------------------------------------------------------------------- transformers itself

@pytest.mark.transformers
def test_transformers_loads_a_trained_export_with_the_same_logits(tmp_path):
    torch = pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    train_char_model(tmp_path, 20, '--dtype=float32')
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / 'hf'), output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched tensors
    ckpt, _ = checkpoint.load_run(tmp_path / 'out')
    config = GPTConfig(**ckpt['model_args'])
    stoi = json.loads((tmp_path / 'hf' / 'chars.json').read_text())
    idx = np.array([[stoi[c] for c in 'ROMEO: hello, world.\nJULIET: go']])
    with torch.no_grad():
        theirs = hf.eval()(torch.tensor(idx)).logits.numpy()
    ours = model.forward(jax.tree_util.tree_map(jnp.asarray, ckpt['params']), jnp.asarray(idx), config)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=1e-5)


@pytest.mark.transformers
def test_transformers_gpt2_tokenizer_encodes_as_tiktoken(tmp_path, gpt2_encoding):
    pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    config = GPTConfig(block_size=64, vocab_size=50304, n_layer=1, n_head=2, n_embd=16)
    save_run(tmp_path / 'out', config, tokenizer={'tokenizer': 'gpt2'})
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    text = ("Hello world! It's 2024: naïve café, 日本語 and emoji 🎉.\n\n  Indented\tTabs<|endoftext|>"
            "The end   ")
    expected = gpt2_encoding.encode(text, allowed_special='all')
    for cls in (transformers.GPT2TokenizerFast, transformers.GPT2Tokenizer):
        tokenizer = cls.from_pretrained(str(tmp_path / 'hf'))
        assert tokenizer(text)['input_ids'] == expected, cls.__name__
        assert tokenizer.decode(expected) == text and tokenizer.eos_token_id == 50256


# ----------------------------------------------------------------------------- a folder as init_from

def gpt2_folder(tmp_path):
    """tmp_path/hf: export.py's folder of a random 1-layer model with GPT-2's vocabulary -> its params, config."""
    config = GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=16)
    save_run(tmp_path / 'out', config, tokenizer={'tokenizer': 'gpt2'})
    p = export(tmp_path, '--out_dir=out', '--to=hf')
    assert p.returncode == 0, p.stderr
    return model.from_pretrained(str(tmp_path / 'hf'))


def script(cwd, name, *args):
    return subprocess.run([sys.executable, str(ROOT / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_sample_from_a_gpt2_folder_draws_what_generate_draws(tmp_path, gpt2_bpe):
    params, config = gpt2_folder(tmp_path)
    p = script(tmp_path, 'sample.py', '--init_from=hf', '--start= the king', '--num_samples=2',
               '--max_new_tokens=12', '--seed=5', '--top_k=50', '--dtype=float32')
    assert p.returncode == 0, p.stderr
    idx = jnp.tile(jnp.asarray(gpt2_bpe.encode(' the king'))[None], (2, 1))
    out = np.asarray(model.generate(jax.tree_util.tree_map(jnp.asarray, params), idx, jax.random.key(5), config, 12,
                                    temperature=0.8, top_k=50, keep_tokens=12))
    expected = ''.join(gpt2_bpe.decode(row.tolist()) + '\n---------------\n' for row in out)
    assert p.stdout == expected
    assert len(set(out[:, -12:].ravel())) > 4  # a real draw, not one token over and over


OWN_BPE = {'pat_str': r"\S+|\s+", 'mergeable_ranks': {bytes([b]): b for b in range(256)} | {b'ab': 256, b'abc': 257},
           'special_tokens': {'<|endoftext|>': 258}}


@pytest.mark.parametrize('vocabulary', ['characters', 'own BPE'])
def test_sample_from_an_exported_folder_writes_in_the_models_own_vocabulary(tmp_path, vocabulary):
    # a character or own-BPE model exported, then sampled from its folder: the tokens are read
    # from chars.json or tiktoken.json and the text is what generate() draws, in that vocabulary
    import tiktoken
    if vocabulary == 'characters':
        config, record, prompt = CFG, CHARS, 'ROMEO'
        encode, decode = lambda text: [CHARS['stoi'][c] for c in text], lambda ids: ''.join(CHARS['itos'][i] for i in ids)
    else:
        config, record, prompt = replace(CFG, vocab_size=259), {'vocab_size': 259, 'tokenizer': OWN_BPE}, 'abc ab'
        enc = tiktoken.Encoding('own', **OWN_BPE)
        encode, decode = enc.encode, enc.decode
    params = save_run(tmp_path / 'out', config, tokenizer=record)
    assert export(tmp_path, '--out_dir=out', '--to=hf').returncode == 0
    p = subprocess.run([sys.executable, str(ROOT / 'sample.py'), '--init_from=hf', f'--start={prompt}', '--num_samples=2',
                        '--max_new_tokens=12', '--seed=5', '--top_k=30', '--dtype=float32'],
                       cwd=tmp_path, capture_output=True, timeout=300)  # bytes: a drawn '\r' stays one
    assert p.returncode == 0, p.stderr
    assert ('character vocabulary of 37 from hf/chars.json' if vocabulary == 'characters' else
            'BPE of 259 tokens from hf/tiktoken.json').encode() in p.stderr
    idx = jnp.tile(jnp.asarray(encode(prompt))[None], (2, 1))
    out = np.asarray(model.generate(jax.tree_util.tree_map(jnp.asarray, params), idx, jax.random.key(5), config, 12,
                                    temperature=0.8, top_k=30, keep_tokens=12))
    text = p.stdout.decode('utf-8')
    assert text == ''.join(decode(row.tolist()) + '\n---------------\n' for row in out)
    assert len(set(out[:, -12:].ravel())) > 4  # a real draw, not one token over and over
    if vocabulary == 'characters':
        assert set(text) <= set(CHARS['stoi']) | set('\n-')


def gpt2_dataset(data_dir, n=4000):
    """A dataset in GPT-2 BPE as prepare_owt.py writes one (made-up token ids)."""
    ids = np.random.default_rng(0).integers(0, 50257, n).astype(np.uint16)
    datafiles.write_dataset(data_dir, {'train.bin': ids[:3000].tofile, 'val.bin': ids[3000:].tofile},
                         {'tokenizer': 'gpt2', 'vocab_size': 50257})


def test_train_from_a_gpt2_folder_starts_from_its_weights(tmp_path, gpt2_bpe):
    params, config = gpt2_folder(tmp_path)
    gpt2_dataset(tmp_path / 'data' / 'owt')
    p = script(tmp_path, 'train.py', '--dataset=owt', '--init_from=hf', '--out_dir=ft', '--batch_size=4',
               '--block_size=8', '--gradient_accumulation_steps=1', '--max_iters=2', '--eval_interval=2',
               '--eval_iters=2', '--warmup_iters=0', '--log_interval=1', '--dtype=float32')
    assert p.returncode == 0, p.stderr
    assert 'initializing from OpenAI GPT-2 weights: hf' in p.stdout
    ckpt = files.load_pickle(tmp_path / 'ft' / 'ckpt.pkl')
    assert ckpt['model_args']['vocab_size'] == 50257 and ckpt['model_args']['block_size'] == 8  # cut to 8 positions
    np.testing.assert_array_equal(ckpt['params']['wpe'].shape, (8, 16))
    # two small steps from the folder's weights: close to them, far from a fresh init's
    moved = np.abs(ckpt['params']['h']['mlp']['c_fc']['weight'] - params['h']['mlp']['c_fc']['weight']).max()
    assert 0 < moved < 0.02


def test_a_gpt2_folder_that_cannot_serve_is_one_error_line(tmp_path, gpt2_bpe):
    gpt2_dataset(tmp_path / 'data' / 'owt')
    train = lambda *a: script(tmp_path, 'train.py', '--dataset=owt', '--out_dir=ft', '--max_iters=1', '--block_size=8',
                              '--batch_size=4', *a)
    # a folder of a smaller vocabulary than GPT-2 BPE's (transformers' tiny test model)
    assert_one_error_line(train(f'--init_from={FIXTURE}'), "holds a model of 101 tokens, fewer than GPT-2 BPE's 50,257")
    assert_one_error_line(script(tmp_path, 'sample.py', f'--init_from={FIXTURE}', '--start= the king'),
                 "past the model's vocabulary of 101 tokens")
    # a cut-off weights file, a folder without one
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'config.json').write_text((FIXTURE / 'config.json').read_text())
    (broken / 'model.safetensors').write_bytes((FIXTURE / 'model.safetensors').read_bytes()[:5000])
    assert_one_error_line(train('--init_from=broken'), 'broken does not hold a readable GPT-2')
    assert_one_error_line(script(tmp_path, 'sample.py', '--init_from=broken'), 'broken does not hold a readable GPT-2')
    (broken / 'model.safetensors').unlink()
    assert_one_error_line(train('--init_from=broken'), 'broken lacks model.safetensors')
    assert not (tmp_path / 'ft').exists()
