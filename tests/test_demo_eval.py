"""The demos' evaluation scripts: eval_addition.py (greedy exact-match accuracy of an adder) and
sample_image.py (images drawn by a palette-token GPT, and its val loss), and scoring.py, which
holds how they score. Offline and small: tiny models, a few training steps, data made in the test.
The scripts run as a user runs them once each after training; their checks and refusals run in
this process (helpers.run_script_in_process), where JAX has started already."""
import math
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

import datafiles
import files
import model
import prepare_addition
import scoring
from model import GPTConfig
from helpers import assert_one_error_line, run_script_in_process
from test_demos import RunsAShellCommand, read_png

ROOT = Path(__file__).resolve().parent.parent  # the project folder


def run(cwd, script, *args, timeout=300):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok(p):
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


@pytest.fixture
def run_here(monkeypatch, capsys):
    """run_here(cwd, script, *args): a demo script run in this process with cwd as the working
    directory; its exit status, stdout and stderr as a subprocess.CompletedProcess."""
    def run_here(cwd, script, *args):
        monkeypatch.chdir(cwd)
        return run_script_in_process(capsys, ROOT / script, *args)
    return run_here


# ----------------------------------------------------------------------------- accuracy()

N_DIGITS = 2
TINY_ADDER = GPTConfig(block_size=3 * N_DIGITS, vocab_size=10, n_layer=2, n_head=2, n_embd=32)


def argmax_decode(params, config, prompts, steps):
    """Greedy decoding the slow way: the whole sequence through model.forward for every token.
    The sequence is zero-padded to its final length (one compilation); the model is causal, so
    the logits at position t-1 do not see the padding after it."""
    B, T0 = prompts.shape
    forward = jax.jit(model.forward, static_argnums=2)
    seq = np.zeros((B, T0 + steps), np.int32)
    seq[:, :T0] = prompts
    for t in range(T0, T0 + steps):
        logits = np.asarray(forward(params, seq, config))  # [B, T, V]
        seq[:, t] = logits[:, t - 1].argmax(-1)
    return seq[:, T0:]


@pytest.fixture(scope='module')
def random_adder():
    """A random tiny model and 37 two-digit examples: the sums of the even rows are replaced by
    what the model itself answers (so it gets those right), the odd rows keep the true sums."""
    n = N_DIGITS
    params = model.init_params(TINY_ADDER, jax.random.key(3))
    ids = np.random.default_rng(0).choice(10 ** (2 * n), 37, replace=False)
    examples = prepare_addition.encode_pairs(ids, n)  # [37, 3n+1]
    answers = argmax_decode(params, TINY_ADDER, examples[:, :2 * n], n + 1)
    examples[::2, 2 * n:] = answers[::2]
    return params, examples, answers


@pytest.mark.parametrize('batch_size', [16, 64])  # 37 = 16 + 16 + 5 padded; one padded batch
def test_accuracy_agrees_with_argmax_decoding(random_adder, batch_size):
    params, examples, answers = random_adder
    n = N_DIGITS
    correct, total, wrong = scoring.accuracy(params, TINY_ADDER, examples, n, batch_size)

    expected_wrong = []
    for ex, ans in zip(examples, answers):
        a, b, c = prepare_addition.decode_example(ex, n)
        if (ans != ex[2 * n:]).any():
            expected_wrong.append((a, b, c, prepare_addition.decode_sum(ans, n)))
    assert total == 37
    assert correct == total - len(expected_wrong)
    assert wrong == expected_wrong
    assert 19 <= correct < total  # the 19 even rows are right by construction, some odd ones wrong


def test_accuracy_compiles_generation_once_per_batch_size(random_adder):
    params, examples, answers = random_adder
    if not hasattr(model.generate, '_cache_size'):
        pytest.skip('this jax has no jit cache introspection')
    right = (answers == examples[:, 2 * N_DIGITS:]).all(axis=1)  # [37] what the model gets right
    before = model.generate._cache_size()
    for count in (1, 5, 6, 13):  # one short batch, a full one, and padded last batches: batches of 5
        correct, total, _ = scoring.accuracy(params, TINY_ADDER, examples[:count], N_DIGITS, 5)
        assert (correct, total) == (right[:count].sum(), count)
    assert model.generate._cache_size() - before == 1  # one compilation for the one batch shape (5 is new here)


def test_accuracy_counts_a_perfect_model_as_perfect(random_adder):
    params, examples, answers = random_adder
    examples = examples.copy()
    examples[:, 2 * N_DIGITS:] = answers  # every label is what the model says
    assert scoring.accuracy(params, TINY_ADDER, examples, N_DIGITS, 64) == (37, 37, [])


# ----------------------------------------------------------------------------- eval_addition.py

def test_addition_train_then_eval_end_to_end(tmp_path, run_here):
    prepare_addition.main([f'--out_dir={tmp_path / "data" / "addition"}'])
    ok(run(tmp_path, 'train.py', str(ROOT / 'config' / 'train_addition.py'),
           '--n_layer=1', '--n_head=2', '--n_embd=32', '--batch_size=32', '--max_iters=20',
           '--eval_interval=10', '--eval_iters=2', '--log_interval=10', '--warmup_iters=2',
           '--always_save_checkpoint=True'))
    assert (tmp_path / 'out-addition' / 'ckpt.pkl').is_file()
    p = ok(run(tmp_path, 'demos/eval_addition.py', '--batch_size=128'))  # 500 = 3 x 128 + 116 padded
    m = re.search(r'^held-out accuracy: (\d+)/500 = (\d+\.\d\d)%', p.stdout, re.M)
    assert m, p.stdout
    assert float(m.group(2)) == pytest.approx(100 * int(m.group(1)) / 500, abs=0.005)
    if int(m.group(1)) < 500:  # 20 steps of a tiny model: wrong answers are listed
        assert re.search(r'^  wrong: \d+ \+ \d+ = \d+, model said [\d?]+$', p.stdout, re.M)

    p = ok(run_here(tmp_path, 'demos/eval_addition.py', '--split=train', '--max_examples=300'))
    assert re.search(r'^train accuracy: \d+/300 = ', p.stdout, re.M), p.stdout


def test_eval_scripts_help_lists_the_settings_with_their_comments_under_headings(run_here, tmp_path):
    for script, heading, row in [('demos/eval_addition.py', 'system', "batch_size   = 500              examples per generate call"),
                                 ('demos/sample_image.py', 'sampling', "num_samples     = 16              images to draw")]:
        p = ok(run_here(tmp_path, script, '--help'))
        assert p.stdout.startswith(f'usage: python {os.path.basename(script)}')
        assert f'\n{heading}\n' in p.stdout and f'\n  {row}' in p.stdout


# ----------------------------------------------------------------------------- sample_image.py

PALETTE = np.array([[255, 0, 0], [0, 200, 0], [0, 0, 255], [250, 250, 250]], np.uint8)
SIZE = 8


def tiny_images(rng, count):
    """Palette-token 8x8 images: two colours split at a random row or column."""
    out = np.empty((count, 1 + SIZE * SIZE), np.uint16)
    for i in range(count):
        c1, c2 = rng.choice(len(PALETTE), 2, replace=False)
        img = np.full((SIZE, SIZE), c1)
        cut = rng.integers(1, SIZE)
        if i % 2:
            img[cut:] = c2
        else:
            img[:, cut:] = c2
        out[i] = np.concatenate([[len(PALETTE)], img.ravel()])
    return out


def test_sample_image_end_to_end(tmp_path, run_here):
    d = tmp_path / 'data' / 'tinyimg'
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tiny_images(rng, 64).tofile(d / 'train.bin')
    tiny_images(rng, 8).tofile(d / 'val.bin')
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': len(PALETTE) + 1, 'example_len': 1 + SIZE * SIZE, 'prompt_len': 1,
                     'palette': PALETTE, 'image_size': SIZE, 'start_token': len(PALETTE)}, f)
    ok(run(tmp_path, 'train.py', str(ROOT / 'config' / 'train_image.py'), '--dataset=tinyimg',
           '--block_size=64', '--n_layer=1', '--n_head=2', '--n_embd=32', '--batch_size=8',
           '--max_iters=20', '--eval_interval=10', '--eval_iters=2', '--log_interval=10',
           '--warmup_iters=2', '--always_save_checkpoint=True', '--out_dir=out-img'))

    # 6 samples in batches of 4 (the second padded), 3 to a row; val loss over 8 images in 3s
    p = ok(run(tmp_path, 'demos/sample_image.py', '--out_dir=out-img', '--num_samples=6', '--batch_size=4',
               '--nrow=3', '--eval=True', '--eval_batch_size=3'))
    png = tmp_path / 'out-img' / 'samples.png'
    assert str(Path('out-img') / 'samples.png') in p.stdout
    m = re.search(r'^val loss: (\d+\.\d+) nats per pixel token', p.stdout, re.M)
    assert m, p.stdout
    assert 0 < float(m.group(1)) < math.log(len(PALETTE) + 1) + 0.5

    grid = read_png(png)
    assert grid.shape == (2 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2, 3)  # 2 rows x 3 columns, 2-pixel border
    allowed = {tuple(c) for c in PALETTE} | {(0, 0, 0)}  # black: a stray start token
    for i in range(6):
        top, left = 2 + (i // 3) * (SIZE + 2), 2 + (i % 3) * (SIZE + 2)
        cell = grid[top:top + SIZE, left:left + SIZE].reshape(-1, 3)
        assert {tuple(px) for px in cell} <= allowed
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()

    # the same seed draws the same images
    ok(run_here(tmp_path, 'demos/sample_image.py', '--out_dir=out-img', '--num_samples=6', '--batch_size=4',
                '--nrow=3', '--out=again.png'))
    np.testing.assert_array_equal(read_png(tmp_path / 'out-img' / 'again.png'), grid)


@pytest.mark.parametrize('prompt_len', [1, 4])
def test_val_loss_is_the_mean_over_every_scored_token(prompt_len):
    config = GPTConfig(block_size=16, vocab_size=7, n_layer=1, n_head=2, n_embd=16)
    params = model.init_params(config, jax.random.key(1))
    examples = np.random.default_rng(1).integers(0, 7, (11, 17)).astype(np.uint16)
    x, y = examples[:, :-1].astype(np.int32), examples[:, 1:].astype(np.int32)
    y[:, :prompt_len - 1] = -1
    expected = float(jax.jit(model.loss_fn, static_argnums=3)(params, x, y, config))
    for batch_size in (4, 32):  # padded last batches (12 rows, 32 rows) must not count
        got = scoring.val_loss(params, config, examples, prompt_len, batch_size, jnp.float32)
        assert got == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- bad inputs, pipes, other directories

def save_untrained_run(out_dir, config, dataset):
    """A checkpoint as train.py writes one, of an untrained model: enough to reach every check."""
    params = jax.tree_util.tree_map(np.asarray, model.init_params(config, jax.random.key(0)))
    files.save_pickle(out_dir / 'ckpt.pkl', {'params': params, 'model_args': asdict(config),
                                              'config': {'dataset': dataset}})


@pytest.fixture(scope='module')
def demo_dir(tmp_path_factory):
    """A working directory with both demos' datasets (2-digit sums, 8x8 images), an untrained model
    for each, and foreign, hostile and broken checkpoints and datasets beside them."""
    d = tmp_path_factory.mktemp('demos')
    prepare_addition.main([f'--out_dir={d / "data" / "addition"}'])
    save_untrained_run(d / 'out-addition', GPTConfig(block_size=6, vocab_size=10, n_layer=1, n_head=2, n_embd=16),
                       'addition')
    images = tiny_images(np.random.default_rng(0), 8)
    datafiles.write_dataset(str(d / 'data' / 'tinyimg'), {'train.bin': lambda f: f.write(images.tobytes()),
                                                       'val.bin': lambda f: f.write(images.tobytes())},
                         {'vocab_size': len(PALETTE) + 1, 'example_len': 1 + SIZE * SIZE, 'prompt_len': 1,
                          'palette': PALETTE, 'image_size': SIZE, 'start_token': len(PALETTE)})
    save_untrained_run(d / 'out-image', GPTConfig(block_size=64, vocab_size=5, n_layer=1, n_head=2, n_embd=16),
                       'tinyimg')

    files.save_pickle(d / 'foreign' / 'ckpt.pkl', {'something': 'else'})
    (d / 'hostile').mkdir()
    (d / 'hostile' / 'ckpt.pkl').write_bytes(pickle.dumps(RunsAShellCommand(f'touch {d / "pwned"}')))
    (d / 'broken').mkdir()
    (d / 'broken' / 'ckpt.pkl').write_bytes(b'not a pickle')
    datafiles.write_dataset(str(d / 'data' / 'chars'), {'train.bin': lambda f: f.write(b'\0\0' * 100),
                                                     'val.bin': lambda f: f.write(b'\0\0' * 10)},
                         {'vocab_size': 1, 'itos': {0: 'a'}, 'stoi': {'a': 0}})
    shutil.copytree(d / 'data' / 'chars', d / 'data' / 'evil')
    (d / 'data' / 'evil' / 'meta.pkl').write_bytes(pickle.dumps(RunsAShellCommand(f'touch {d / "pwned"}')))
    shutil.copytree(d / 'data' / 'addition', d / 'data' / 'halfway')
    (d / 'data' / 'halfway' / datafiles.INCOMPLETE).write_text('')
    return d


@pytest.mark.parametrize('script, flags, words', [
    ('eval_addition', ['--out_dir=nowhere'], ['no checkpoint at nowhere/ckpt.pkl', 'python demos/prepare_addition.py']),
    ('eval_addition', ['--out_dir=foreign'], ['not a checkpoint written by train.py', 'python train.py']),
    ('eval_addition', ['--out_dir=hostile'], ['refusing to load posix.system']),
    ('eval_addition', ['--out_dir=broken'], ['broken/ckpt.pkl is not readable']),
    ('eval_addition', ['--dataset=missing'], ['data/missing/train.bin not found', 'python demos/prepare_addition.py']),
    ('eval_addition', ['--dataset=chars'], ['data/chars is not an addition dataset', 'python demos/prepare_addition.py']),
    ('eval_addition', ['--dataset=evil'], ['data/evil/meta.pkl: refusing to load posix.system']),
    ('eval_addition', ['--dataset=halfway'], ['left half-written', 'run it again (python demos/prepare_addition.py)']),
    ('eval_addition', ['--out_dir=out-image', '--dataset=addition'], ['not a model of 2-digit sums', 'out_dir of an adder']),
    ('eval_addition', ['--split=test'], ["split must be 'val' or 'train', not 'test'"]),
    ('eval_addition', ['--batch_size=0'], ['batch_size must be at least 1']),
    ('eval_addition', ['--dtype=float64'], ["dtype must be 'auto', 'float32', 'bfloat16' or 'float16'"]),
    ('eval_addition', ['--batch_sise=8'], ["unknown key 'batch_sise' (did you mean 'batch_size'?)"]),
    ('eval_addition', ['--batch_size=many'], ["key 'batch_size' expects int"]),
    ('sample_image', ['--out_dir=nowhere'], ['no checkpoint at nowhere/ckpt.pkl', 'python demos/prepare_image.py']),
    ('sample_image', ['--out_dir=foreign'], ['not a checkpoint written by train.py', 'python train.py']),
    ('sample_image', ['--out_dir=hostile'], ['refusing to load posix.system']),
    ('sample_image', ['--dataset=missing'], ['data/missing/train.bin not found', 'python demos/prepare_image.py']),
    ('sample_image', ['--dataset=addition'], ['data/addition is not an image dataset', 'python demos/prepare_image.py']),
    ('sample_image', ['--dataset=evil'], ['data/evil/meta.pkl: refusing to load posix.system']),
    ('sample_image', ['--out_dir=out-addition', '--dataset=tinyimg'], ['not a model of 8x8 images', 'out_dir of an image model']),
    ('sample_image', ['--top_k=0'], ['top_k must be at least 1, not 0']),
    ('sample_image', ['--top_p=2.0'], ['top_p must be a number above 0 and at most 1, not 2.0']),
    ('sample_image', ['--temperature=0'], ['temperature must be a positive number, not 0']),
    ('sample_image', ['--num_samples=-1'], ['num_samples must be at least 0, not -1']),
    ('sample_image', ['--dtype=float64'], ["dtype must be 'auto', 'float32', 'bfloat16' or 'float16'"]),
])
def test_bad_inputs_exit_1_with_one_line(demo_dir, run_here, script, flags, words):
    p = run_here(demo_dir, f'demos/{script}.py', *flags)
    assert_one_error_line(p, *words)
    assert not (demo_dir / 'pwned').exists()


def test_eval_addition_piped_into_head_ends_quietly(demo_dir):
    # an untrained model gets nearly all of 5,000 training sums wrong: 150 kB of lines, more than a pipe holds;
    # unbuffered, every print reaches the pipe at once, and the reader stops at the first, a setting's
    p = subprocess.run(f'{sys.executable} {ROOT / "demos/eval_addition.py"} --split=train --max_examples=5000 '
                       f'--show_wrong=10000 | head -n 1; exit ${{PIPESTATUS[0]}}', shell=True, executable='/bin/bash',
                       cwd=demo_dir, env={**os.environ, 'PYTHONUNBUFFERED': '1'}, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 141, p.stderr  # ended by the pipe (128 + SIGPIPE), as a pipeline expects
    assert len(p.stdout.splitlines()) == 1 and p.stderr == ''


def test_eval_addition_from_another_directory_finds_the_projects_data_and_run(demo_dir, tmp_path):
    project = tmp_path / 'project'  # a copy of the project, with the demo's dataset and run in it
    (project / 'demos').mkdir(parents=True)
    for path in [*ROOT.glob('*.py'), *ROOT.glob('demos/*.py')]:
        shutil.copy(path, project / path.relative_to(ROOT))
    shutil.copytree(demo_dir / 'data' / 'addition', project / 'data' / 'addition')
    shutil.copytree(demo_dir / 'out-addition', project / 'out-addition')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    p = ok(subprocess.run([sys.executable, str(project / 'demos' / 'eval_addition.py')], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300))
    assert re.search(r'^held-out accuracy: \d+/500 = ', p.stdout, re.M), p.stdout
