"""train.py end to end, and the modules it is made of: learning, accumulation, data parallelism on
devices and hosts, exact resume, the schedule, progress lines, safe checkpoints and the run's
folder, Ctrl-C, and one clear line for every bad input.

Runs of train.py are few and shared: `base` trains once for the whole module and most checks
read its output; refusals are checked in-process where a new process adds nothing."""
import atexit
import json
import math
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import checkpoint
import common
import configurator
import datafiles
import devices
import files
import model
import progress
from helpers import assert_one_error_line

ROOT = Path(__file__).resolve().parent.parent  # the project folder
TRAIN = str(ROOT / 'train.py')
MODEL = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32']
TINY = ['--dataset=tiny', *MODEL, '--batch_size=8', '--gradient_accumulation_steps=1', '--learning_rate=1e-2',
        '--warmup_iters=2', '--lr_decay_iters=10', '--min_lr=1e-3', '--eval_iters=4', '--log_interval=1',
        '--dtype=float32', '--dropout=0.0']
BASE = ['--out_dir=base', '--max_iters=12', '--eval_interval=5', '--always_save_checkpoint=True']


def write_tiny(data_dir):
    """data_dir: the first 100k characters of some English text, as prepare_char.py writes them."""
    text = (ROOT / 'README.md').read_text()
    text = (text * (1 + 100_000 // len(text)))[:100_000]
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], np.uint16)
    datafiles.write_dataset(data_dir, {'train.bin': lambda f: datafiles.write_array(f, ids[:90_000]),
                                       'val.bin': lambda f: datafiles.write_array(f, ids[90_000:])},
                            {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': stoi})


def run(cwd, *args, devices=1, env=None, check=True, tiny=True, timeout=300):
    e = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}', 'PYTHONUNBUFFERED': '1',
         **(env or {})}
    p = subprocess.run([sys.executable, TRAIN, *(TINY if tiny else []), *args], cwd=cwd, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def start(cwd, *args):
    """train.py in the background, its output line by line (stdout and stderr together)."""
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
    return subprocess.Popen([sys.executable, TRAIN, *TINY, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(proc, prefix):
    """Read proc's output until a line starts with prefix; the lines read so far."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f'no line starting with {prefix!r}:\n' + ''.join(seen[-30:]))


def records(out_dir, key):
    return [r for r in map(json.loads, open(Path(out_dir) / 'log.jsonl')) if key in r]


def train_losses(out_dir):
    return {r['iter']: r['loss'] for r in records(out_dir, 'loss')}


def val_losses(out_dir):
    return {r['iter']: r['val_loss'] for r in records(out_dir, 'val_loss')}


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns('.lock'))
    return Path(dst)


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A working directory with data/tiny and `base`: 12 steps of train.py on one device."""
    cwd = tmp_path_factory.mktemp('train')
    write_tiny(cwd / 'data' / 'tiny')
    p = run(cwd, *BASE, '--device=cpu', '--compile=False')  # nanoGPT's flags are accepted with a note
    (cwd / 'base.out').write_text(p.stdout)
    (cwd / 'base.err').write_text(p.stderr)
    return cwd


@pytest.fixture
def cwd(work, tmp_path):
    """A fresh working directory with the module's data and base run."""
    os.symlink(work / 'data', tmp_path / 'data')
    copy_run(work / 'base', tmp_path / 'base')
    return tmp_path


# ----------------------------------------------------------------------------- learning, and what a run shows

def test_training_lowers_the_loss_from_about_ln_vocab(work):
    vocab = files.load_pickle(work / 'data/tiny/meta.pkl')['vocab_size']
    val = val_losses(work / 'base')
    assert abs(val[0] - math.log(vocab)) < 0.1  # a fresh model guesses uniformly
    assert val[12] < val[0] - 0.7


def test_the_last_iterations_are_evaluated_and_saved_and_summed_up(work):
    assert sorted(val_losses(work / 'base')) == [0, 5, 10, 12]  # every 5, and the end
    assert files.load_pickle(work / 'base' / 'ckpt.pkl')['iter_num'] == 12
    out = (work / 'base.out').read_text()
    assert 'done: 12 iterations' in out and 'best val loss' in out
    assert 'base/ckpt.pkl holds the model of iter 12' in out
    assert 'use it: python sample.py --out_dir=base' in out
    assert 'loss curves: base/loss.png' in out and (work / 'base' / 'loss.png').stat().st_size > 1000


def test_progress_lines_show_iterations_of_all_an_eta_and_no_mfu_on_a_cpu(work):
    out = (work / 'base.out').read_text().splitlines()
    lines = [l for l in out if l.startswith('iter ')]
    assert [l.split(':')[0] for l in lines] == [f'iter {i}/12' for i in range(1, 13)]
    assert 'includes compilation' in lines[0]
    assert all(re.search(r', \d+\.\d\d TFLOP/s, ETA \d+s$', l) for l in lines[2:]), lines
    assert lines[-1].endswith('ETA 0s') and not [l for l in out if 'mfu' in l.lower()]
    evals = [l for l in out if l.startswith('step ')]
    assert [l.split(':')[0] for l in evals] == ['step 0/12', 'step 5/12', 'step 10/12', 'step 12/12']
    assert all('val bpb' in l and 'since start' in l for l in evals)
    first = [l for l in out if l.startswith('devices: ')]
    assert len(first) == 1 and 'compute dtype float32 (set)' in first[0] and 'memory allocator' in first[0]
    assert not [l for l in out if l.startswith('warning')]  # small data, small batch: nothing to warn about
    err = (work / 'base.err').read_text()
    assert 'note: --device is not needed here' in err and 'note: --compile is not needed here' in err
    logged = records(work / 'base', 'loss')
    assert all(r['mfu'] is None and r['tflops'] > 0 and r['elapsed'] > 0 for r in logged)


def test_the_closing_summary_suggests_a_command_that_works_on_the_dataset():
    assert progress.next_command('out', {'stoi': {'\n': 0, 'a': 1}}) == 'python sample.py --out_dir=out'
    assert progress.next_command('o', {'stoi': {'7': 1, '3': 0}}) == "python sample.py --out_dir=o --start='3'"
    assert progress.next_command('o', {'example_len': 7, 'vocab_size': 10, 'stoi': {str(i): i for i in range(10)}}) \
        == 'python demos/eval_addition.py --out_dir=o'
    assert progress.next_command('o', {'palette': [], 'example_len': 257}) == 'python demos/sample_image.py --out_dir=o'


def nanogpt_lr(it, lr, warmup, decay, min_lr):  # nanoGPT's get_lr, written out independently
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup) if decay > warmup else 1.0
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def logged_lrs(out_dir):
    return {r['iter']: r['lr'] for r in records(out_dir, 'lr')}


def test_logged_learning_rate_is_nanogpts_schedule(work):
    lrs = logged_lrs(work / 'base')  # warmup 2, decay to 10, then min_lr
    assert list(lrs) == list(range(1, 13))
    for it, lr in lrs.items():  # the rate of the step that led to iteration it
        assert lr == pytest.approx(nanogpt_lr(it - 1, 1e-2, 2, 10, 1e-3), rel=1e-6)


@pytest.mark.parametrize('warmup, decay', [(6, 6), (0, 4)])
def test_warmup_equal_to_decay_and_no_warmup_work(cwd, warmup, decay):
    run(cwd, '--out_dir=out', '--max_iters=8', '--eval_interval=8', '--eval_iters=1', f'--warmup_iters={warmup}',
        f'--lr_decay_iters={decay}', '--learning_rate=1e-3', '--min_lr=1e-4')
    for it, lr in logged_lrs(cwd / 'out').items():
        assert lr == pytest.approx(nanogpt_lr(it - 1, 1e-3, warmup, decay, 1e-4), rel=1e-6)


def test_optimizer_uses_the_logged_learning_rate(cwd):
    # Adam's first step moves each weight by lr * g / |g| (weight decay and clipping off), so
    # the weights move by exactly the learning rate the optimizer used
    p = run(cwd, '--out_dir=a', '--max_iters=1', '--eval_interval=1', '--warmup_iters=3', '--lr_decay_iters=6',
            '--weight_decay=0.0', '--grad_clip=0.0', '--always_save_checkpoint=True')
    first = files.load_pickle(cwd / 'a' / 'ckpt.pkl')['params']['h']['mlp']['c_fc']['weight']
    cfg = model.GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32,
                          vocab_size=files.load_pickle(cwd / 'data/tiny/meta.pkl')['vocab_size'])
    init = np.asarray(model.init_params(cfg, jax.random.key(1337))['h']['mlp']['c_fc']['weight'])
    assert np.median(np.abs(first - init)) == pytest.approx(logged_lrs(cwd / 'a')[1], rel=1e-3)
    # a run that ends within its warmup says so, and only that
    warning = [l for l in p.stdout.splitlines() if l.startswith('warning:')]
    assert len(warning) == 1 and 'ends within its warmup' in warning[0] and 'GPT-2' not in warning[0]


def test_gpt2_sized_defaults_on_small_data_warn(cwd):
    p = run(cwd, '--dataset=tiny', '--out_dir=out', '--max_iters=0', '--n_layer=1', '--n_head=2', '--n_embd=32',
            '--block_size=64', '--eval_iters=1', '--dtype=float32', tiny=False)
    warning = [l for l in p.stdout.splitlines() if l.startswith('warning:')]
    assert len(warning) == 1 and '(GPT-2-sized defaults?)' in warning[0] and 'config/train_char.py' in warning[0]


# ----------------------------------------------------------------------------- the same steps however the batch is spread

def test_data_parallel_over_four_devices_equals_one_device(cwd, work):
    p = run(cwd, '--out_dir=many', '--max_iters=12', '--eval_interval=5', devices=4)
    assert 'devices: 4' in p.stdout and 'each split over 4 CPU device(s)' in p.stdout
    one, many = train_losses(work / 'base'), train_losses(cwd / 'many')
    np.testing.assert_allclose([many[i] for i in one], list(one.values()), rtol=2e-5)
    np.testing.assert_allclose(list(val_losses(cwd / 'many').values()), list(val_losses(work / 'base').values()),
                               rtol=2e-5)


def test_gradient_accumulation_on_two_devices_equals_the_larger_batch(cwd, work):
    # 2 micro-batches of 4 rows, each split over 2 devices: the same 8 rows as base's one batch
    p = run(cwd, '--out_dir=acc', '--max_iters=12', '--eval_interval=100', '--batch_size=4',
            '--gradient_accumulation_steps=2', devices=2)
    assert 'devices: 2' in p.stdout and 'x 2 accumulation steps' in p.stdout
    one, acc = train_losses(work / 'base'), train_losses(cwd / 'acc')
    np.testing.assert_allclose([acc[i] for i in one], list(one.values()), rtol=2e-5)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(cwd, work):
    port = free_port()
    procs = []
    for i in range(2):
        env = {**os.environ, 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
               'JAX_PROCESS_ID': str(i), 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
        procs.append(subprocess.Popen(
            [sys.executable, TRAIN, *TINY, '--out_dir=two', '--max_iters=4', '--eval_interval=4', '--batch_size=4'],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert 'devices: 2 (cpu) on 2 process(es)' in outs[0]
    assert not [l for l in outs[1].splitlines() if l.startswith(('iter ', 'step '))]  # only process 0 logs
    one, two = train_losses(work / 'base'), train_losses(cwd / 'two')
    np.testing.assert_allclose([two[i] for i in range(1, 5)], [one[i] for i in range(1, 5)], rtol=2e-5)


def test_a_cpu_splits_its_batch_over_one_device_per_core(cwd, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}  # as a user runs it
    p = subprocess.run([sys.executable, TRAIN, *TINY, '--out_dir=auto', '--max_iters=2', '--eval_interval=2',
                        '--batch_size=6', '--cpu_devices=3'], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert 'devices: 3 (cpu) on 1 process(es)' in p.stdout and 'batch 6 x 1 process(es), each split over 3' in p.stdout
    # as many devices as split the batch evenly, up to one per core (at most 8) or cpu_devices
    assert [devices.cpu_device_count(b, 0, cores=4) for b in (5, 6, 8, 12)] == [1, 3, 4, 4]
    assert [devices.cpu_device_count(12, n, cores=2) for n in (0, 3, 5)] == [2, 3, 4]
    assert devices.cpu_device_count(64, 0, cores=32) == 8


# ----------------------------------------------------------------------------- Muon

def test_muon_trains_resumes_bit_exactly_with_dropout_and_two_devices_equal_one(cwd):
    flags = ['--optimizer=muon', '--muon_lr=0.02', '--eval_interval=5', '--always_save_checkpoint=True']
    run(cwd, '--out_dir=straight', '--max_iters=10', '--dropout=0.1', *flags)
    run(cwd, '--out_dir=split', '--max_iters=5', '--dropout=0.1', *flags)
    run(cwd, '--out_dir=split', '--max_iters=10', '--init_from=resume', '--dropout=0.1', *flags)
    straight, split = train_losses(cwd / 'straight'), train_losses(cwd / 'split')
    assert list(split) == list(range(1, 11))
    assert [split[i] for i in range(6, 11)] == [straight[i] for i in range(6, 11)]  # bit for bit
    a, b = (files.load_pickle(cwd / d / 'ckpt.pkl') for d in ('straight', 'split'))
    for x, y in zip(a['opt_state'], b['opt_state']):  # the optimizer state round-trips exactly
        np.testing.assert_array_equal(x, y)
    val = val_losses(cwd / 'straight')
    assert val[10] < val[0] - 0.7  # it learns
    assert a['config']['optimizer'] == 'muon'
    # the state is Muon's and AdamW's: a momentum for each block matrix, and Adam's two moments
    # for the rest (optax's partition keeps masked placeholders where a part has no state)
    shapes = sorted(x.shape for x in a['opt_state'] if getattr(x, 'ndim', 0) == 3)
    assert (2, 32, 96) in shapes and (2, 128, 32) in shapes
    # without dropout, two devices take the same steps as one
    run(cwd, '--out_dir=one', '--max_iters=6', *flags)
    run(cwd, '--out_dir=two', '--max_iters=6', *flags, devices=2)
    one, two = train_losses(cwd / 'one'), train_losses(cwd / 'two')
    np.testing.assert_allclose([two[i] for i in one], list(one.values()), rtol=2e-5)


# ----------------------------------------------------------------------------- an average of the weights

def test_ema_is_the_model_evaluated_and_saved_and_resumes_bit_exactly(cwd):
    flags = ['--ema_decay=0.9', '--eval_interval=1', '--always_save_checkpoint=True']
    run(cwd, '--out_dir=split', '--max_iters=1', *flags)
    one = files.load_pickle(cwd / 'split' / 'ckpt.pkl')
    # after one step the decay is still warming up, min(0.9, 1/10): the average is a tenth of the
    # initial weights and nine tenths of the trained ones
    init = model.init_params(model.GPTConfig(**one['model_args']), jax.random.key(1337))
    for (path, avg), trained, start in zip(jax.tree_util.tree_leaves_with_path(one['params']),
                                           jax.tree_util.tree_leaves(one['train_params']),
                                           jax.tree_util.tree_leaves(init)):
        assert not np.array_equal(trained, np.asarray(start)), path  # the step moved every tensor
        np.testing.assert_allclose(avg, 0.1 * np.asarray(start) + 0.9 * trained, rtol=1e-5, atol=1e-6, err_msg=str(path))
    run(cwd, '--out_dir=split', '--max_iters=3', '--init_from=resume', *flags)
    run(cwd, '--out_dir=straight', '--max_iters=3', *flags)
    a, b = (files.load_pickle(cwd / d / 'ckpt.pkl') for d in ('straight', 'split'))
    for key in ('params', 'train_params'):  # both the average and the weights as trained resume exactly
        for x, y in zip(jax.tree_util.tree_leaves(a[key]), jax.tree_util.tree_leaves(b[key])):
            np.testing.assert_array_equal(x, y)
    assert train_losses(cwd / 'split') == train_losses(cwd / 'straight')
    # each evaluation scores the average, and the weights as trained beside it
    last = records(cwd / 'straight', 'val_loss')[-1]
    assert last['iter'] == 3 and last['val_loss'] != last['val_loss_raw']
    # the saved model is the average: evaluating the checkpoint gives the logged val loss
    run(cwd, '--out_dir=straight', '--init_from=resume', '--eval_only=True', '--max_iters=3')
    assert records(cwd / 'straight', 'val_loss')[-1]['val_loss'] == pytest.approx(last['val_loss'], abs=1e-6)


# ----------------------------------------------------------------------------- resume

def test_resume_continues_bit_exactly_and_cleans_only_its_own_leftovers(cwd, work):
    # base as if it had stopped at iter 5: its checkpoint and log up to there
    run(cwd, '--out_dir=split', '--max_iters=5', '--eval_interval=5', '--always_save_checkpoint=True')
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    (cwd / 'split' / f'.ckpt.pkl.{dead.stdout.strip()}-x1y2.tmp').write_bytes(b'x' * 1000)  # a save killed half-way
    (cwd / 'split' / '.notes.tmp').write_text('not ours')
    with open(cwd / 'split' / 'log.jsonl', 'a') as f:
        f.write('{"iter": 6, "loss": 1.2')  # a line cut short by a crash
    saved = files.load_pickle(cwd / 'split' / 'ckpt.pkl')
    # the model's settings come from the checkpoint: none are given here
    p = run(cwd, '--dataset=tiny', '--out_dir=split', '--init_from=resume', '--max_iters=12', '--eval_interval=5',
            '--always_save_checkpoint=True', '--batch_size=8', '--gradient_accumulation_steps=1',
            '--learning_rate=1e-2', '--warmup_iters=2', '--lr_decay_iters=10', '--min_lr=1e-3', '--eval_iters=4',
            '--log_interval=1', '--dtype=float32', tiny=False)
    assert 'resuming training from split/ckpt.pkl' in p.stdout
    base, split = train_losses(work / 'base'), train_losses(cwd / 'split')
    assert list(split) == list(range(1, 13))  # every line parses; the cut one is gone
    assert [split[i] for i in range(6, 13)] == [base[i] for i in range(6, 13)]  # bit for bit
    a, b = files.load_pickle(work / 'base' / 'ckpt.pkl'), files.load_pickle(cwd / 'split' / 'ckpt.pkl')
    assert a['iter_num'] == b['iter_num'] == 12 and b['model_args']['n_layer'] == 2
    np.testing.assert_array_equal(a['params']['wte'], b['params']['wte'])
    assert sorted(p.name for p in (cwd / 'split').glob('.*.tmp')) == ['.notes.tmp']  # only the dead save's went
    # the clock goes on from the runs it resumes: a time-to-loss curve covers the whole run
    after = [r for r in records(cwd / 'split', 'val_loss') if r['iter'] > 5]
    assert after[0]['elapsed'] > saved['elapsed'] > 0
    assert a['dataset'] == b['dataset'] and b['dataset']['name'] == 'tiny'


def test_resume_takes_the_checkpoints_model_and_names_both_values_of_a_conflict():
    ckpt = {'model_args': dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True), 'config': {}}
    config = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, bias=True)
    checkpoint.resume_settings(ckpt, config, set(), 'adamw', 'out/ckpt.pkl')  # none given: the checkpoint's
    assert config == ckpt['model_args']
    with pytest.raises(common.UserError, match=r'n_layer is 4 for this run but 2 in out/ckpt.pkl'):
        checkpoint.resume_settings(ckpt, {**config, 'n_layer': 4}, {'n_layer'}, 'adamw', 'out/ckpt.pkl')
    with pytest.raises(common.UserError, match=r"trained with optimizer='adamw': resume with the same optimizer"):
        checkpoint.resume_settings(ckpt, dict(config), set(), 'muon', 'out/ckpt.pkl')


def test_resume_on_another_dataset_is_refused_even_with_a_vocabulary_of_the_same_size(tmp_path, work):
    meta = files.load_pickle(work / 'data/tiny/meta.pkl')
    ckpt = files.load_pickle(work / 'base' / 'ckpt.pkl')
    # the same characters in another order: same size, other tokens
    itos = dict(enumerate(sorted(meta['stoi'], reverse=True)))
    other = {'vocab_size': meta['vocab_size'], 'itos': itos, 'stoi': {c: i for i, c in itos.items()}}
    ids = np.zeros(5000, np.uint16)
    datafiles.write_dataset(tmp_path / 'other', {'train.bin': lambda f: datafiles.write_array(f, ids),
                                                 'val.bin': lambda f: datafiles.write_array(f, ids)}, other)
    with pytest.raises(common.UserError, match=r"trained on 'tiny', whose vocabulary differs .*\(--dataset=tiny\)"):
        checkpoint.check_same_dataset(ckpt, datafiles.identity(tmp_path / 'other', other), meta['vocab_size'], tmp_path / 'other', 'x')
    # the same vocabulary, other text
    datafiles.write_dataset(tmp_path / 'more', {'train.bin': lambda f: datafiles.write_array(f, ids),
                                                'val.bin': lambda f: datafiles.write_array(f, ids)}, meta)
    with pytest.raises(common.UserError, match=r'not on the text in .* \(train 5,000 tokens'):
        checkpoint.check_same_dataset(ckpt, datafiles.identity(tmp_path / 'more', meta), meta['vocab_size'], tmp_path / 'more', 'x')
    checkpoint.check_same_dataset(ckpt, datafiles.identity(work / 'data/tiny', meta), meta['vocab_size'], work / 'data/tiny', 'x')


# ----------------------------------------------------------------------------- nothing lost

def test_non_finite_loss_stops_at_once_and_keeps_the_checkpoint(cwd):
    before = (cwd / 'base' / 'ckpt.pkl').read_bytes()
    p = run(cwd, '--out_dir=base', '--max_iters=100', '--eval_interval=100', '--init_from=resume', '--log_interval=1000',
            '--learning_rate=1e30', '--decay_lr=False', '--grad_clip=0.0', check=False)  # the weights blow up
    assert_one_error_line(p, 'stopping without saving', 'this run wrote no checkpoint; base/ckpt.pkl is as it was')
    stopped_at = int(re.search(r'at iter (\d+)', p.stderr).group(1))
    assert stopped_at < 20  # noticed at the step, not at an evaluation
    assert (cwd / 'base' / 'ckpt.pkl').read_bytes() == before


def test_only_a_sane_state_is_saved_and_a_stop_names_what_continues():
    for val_loss, words in ((float('nan'), 'val loss nan at iter 7 is not finite'),
                            (float('inf'), 'val loss inf at iter 7 is not finite'),
                            (4.1, 'val loss 4.1000 at iter 7 is far above the best, 3.0000')):
        with pytest.raises(common.UserError, match=re.escape(words) + '.*stopping without saving: on disk'):
            checkpoint.check_sane(val_loss, 3.0, 7, lambda: 'on disk')
    checkpoint.check_sane(3.9, 3.0, 7, lambda: 'on disk')  # worse, but not diverging: the save rule decides


def test_a_stopped_run_names_resume_only_where_there_is_a_checkpoint(tmp_path, capsys):
    p = progress.Progress(str(tmp_path), True, max_iters=1, eval_interval=1, log_interval=1, start_iter=0,
                          tokens_per_iter=1, flops_per_iter=1, peak_flops=None, lr_at=lambda it: 0.0,
                          on_disk=lambda: 'this run wrote no checkpoint')
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Progress took Ctrl-C: give it back
    for ckpt, words in ((False, 'nothing to continue: start the run again'), (True, '--init_from=resume')):
        if ckpt:
            (tmp_path / 'ckpt.pkl').write_bytes(b'')
        with pytest.raises(SystemExit) as stop:
            p.stop_interrupted(str(tmp_path))
        err = capsys.readouterr().err
        assert stop.value.code == 130 and words in err and err.startswith('stopped: this run wrote no checkpoint'), err


def edit_best(out_dir, by):
    ckpt = files.load_pickle(out_dir / 'ckpt.pkl')
    files.save_pickle(out_dir / 'ckpt.pkl', {**ckpt, 'best_val_loss': ckpt['best_val_loss'] + by})
    return (out_dir / 'ckpt.pkl').read_bytes()


def test_a_diverging_run_does_not_overwrite_the_best_checkpoint_but_eval_only_reports(cwd):
    before = edit_best(cwd / 'base', -2.0)  # the next evaluation sees a val loss 2 nats above the best
    p = run(cwd, '--out_dir=base', '--max_iters=20', '--eval_interval=14', '--init_from=resume', check=False)
    assert_one_error_line(p, 'far above the best', 'this run wrote no checkpoint; base/ckpt.pkl is as it was')
    assert (cwd / 'base' / 'ckpt.pkl').read_bytes() == before
    p = run(cwd, '--out_dir=base', '--init_from=resume', '--eval_only=True')  # an evaluation just reports
    assert 'step 12/' in p.stdout and (cwd / 'base' / 'ckpt.pkl').read_bytes() == before


def test_a_run_that_does_not_resume_refuses_to_replace_a_checkpoint(cwd):
    before = (cwd / 'base' / 'ckpt.pkl').read_bytes()
    for init_from in ('scratch', 'gpt2', str(cwd)):  # a GPT-2 size or folder, as finetuning configs start
        with pytest.raises(common.UserError, match='--init_from=resume.*--overwrite=True'):
            checkpoint.would_replace(str(cwd / 'base' / 'ckpt.pkl'), init_from, False, False)
    checkpoint.would_replace(str(cwd / 'base' / 'ckpt.pkl'), 'resume', False, False)
    checkpoint.would_replace(str(cwd / 'base' / 'ckpt.pkl'), 'gpt2', False, True)  # eval_only writes nothing
    p = run(cwd, '--out_dir=base', '--init_from=gpt2', check=False)  # refused before any download
    assert_one_error_line(p, 'base/ckpt.pkl already holds a checkpoint', '--overwrite=True')
    assert (cwd / 'base' / 'ckpt.pkl').read_bytes() == before
    run(cwd, '--out_dir=base', '--max_iters=3', '--eval_interval=3', '--overwrite=True')
    assert files.load_pickle(cwd / 'base' / 'ckpt.pkl')['iter_num'] == 3


def test_ctrl_c_evaluates_and_saves_after_the_current_step_while_a_second_run_is_refused(cwd):
    # steps of tens of ms, a progress line every 20: the host must not run ahead to the next line
    big = ['--n_embd=256', '--n_head=4', '--block_size=128', '--batch_size=32']
    first = start(cwd, '--out_dir=out', '--max_iters=100000', '--eval_interval=100000', '--log_interval=20', *big)
    try:
        wait_for(first, 'iter 20/')
        p = run(cwd, '--out_dir=out', '--init_from=resume', check=False)  # the lock: refused at once
        assert_one_error_line(p, 'another train.py is running on out')
        assert (cwd / 'out' / 'log.jsonl').stat().st_size > 0  # the refused run removed nothing
        line = wait_for(first, 'iter ')[-1]
        first.send_signal(signal.SIGINT)
        at = int(line.split()[1].split('/')[0])
        out = first.communicate(timeout=120)[0]
    finally:
        first.kill()
    assert first.returncode == 130, out
    assert 'Traceback' not in out and '--init_from=resume' in out
    iter_num = files.load_pickle(cwd / 'out' / 'ckpt.pkl')['iter_num']
    assert at <= iter_num < at + 10, (at, iter_num)  # after the current step, not at the next line (at + 20)
    assert records(cwd / 'out', 'val_loss')[-1]['iter'] == iter_num  # evaluated before it saved


def test_ctrl_c_saves_only_as_an_evaluation_would(cwd):
    before = edit_best(cwd / 'base', -0.5)  # what the next evaluation finds is worse than the best
    proc = start(cwd, '--out_dir=base', '--init_from=resume', '--max_iters=100000', '--eval_interval=100000',
                 '--always_save_checkpoint=False', '--log_interval=5')
    try:
        wait_for(proc, 'iter 20/')
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130 and 'Traceback' not in out, out
    assert 'this run wrote no checkpoint; base/ckpt.pkl is as it was' in out
    assert (cwd / 'base' / 'ckpt.pkl').read_bytes() == before


def test_ctrl_c_before_training_exits_quietly(cwd):
    proc = start(cwd, '--out_dir=early', '--max_iters=100000')
    try:
        wait_for(proc, 'devices: ')  # jax is up; the model is not built yet
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130 and 'Traceback' not in out and 'KeyboardInterrupt' not in out, out


def test_a_killed_checkpoint_write_leaves_the_previous_one_and_the_next_run_cleans_up(tmp_path):
    path = tmp_path / 'ckpt.pkl'
    files.save_pickle(path, {'iter_num': 1, 'w': np.ones(3, np.float32)})
    code = ('import sys, time, numpy as np, files\n'
            'class Stall:  # pickled in the middle of the write: says so, then waits to be killed\n'
            '    def __reduce__(self):\n'
            '        open(sys.argv[2], "w").close()\n'
            '        time.sleep(120)\n'
            'files.save_pickle(sys.argv[1], {"iter_num": 2, "w": np.zeros(10**6, np.float32), "x": Stall()})\n')
    writer = subprocess.Popen([sys.executable, '-c', code, str(path), str(tmp_path / 'writing')], cwd=ROOT)
    try:
        while not (tmp_path / 'writing').exists():  # the writer's own signal that it is half-way
            assert writer.poll() is None, 'the writer ended before it was killed'
            time.sleep(0.01)
        assert len(list(tmp_path.glob('.ckpt.pkl.*.tmp'))) == 1
    finally:
        writer.kill()
        writer.wait()
    assert files.load_pickle(path)['iter_num'] == 1
    checkpoint.RunDir(str(tmp_path))  # the next run in this folder removes the dead writer's temporary
    assert not list(tmp_path.glob('.ckpt.pkl.*.tmp'))


def test_a_second_run_on_a_new_folder_removes_nothing_of_the_first(tmp_path, monkeypatch):
    at_exit = []
    monkeypatch.setattr(atexit, 'register', lambda *a: at_exit.append(a))
    first = checkpoint.RunDir(str(tmp_path / 'new'))  # made the folder, holds the lock
    assert len(at_exit) == 1  # the folder is its own: removed at exit if the run leaves nothing in it
    (tmp_path / 'new' / 'log.jsonl').write_text('{"iter": 0}\n')
    # the race: the second run also found the folder missing (a check made before the first made it)
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, 'exists', lambda p: False if str(p).endswith('new') else real_exists(p))
    with pytest.raises(common.UserError, match='another train.py is running on'):
        checkpoint.RunDir(str(tmp_path / 'new'))
    assert len(at_exit) == 1  # the second run registered nothing to remove at its exit
    assert sorted(os.listdir(tmp_path / 'new')) == ['.lock', 'log.jsonl']  # nothing of the first run removed
    assert first.lock is not None and not first.lock.closed


def test_a_run_stopped_at_its_checks_leaves_no_folder(cwd):
    p = run(cwd, '--out_dir=fresh', '--warmup_iters=10', '--lr_decay_iters=5', check=False)
    assert_one_error_line(p, 'warmup_iters (10) is longer than lr_decay_iters (5)')
    p = run(cwd, '--out_dir=fresh', '--dataset=nope', check=False)  # the folder was made, then the data failed
    assert_one_error_line(p, 'data/nope/train.bin not found', 'prepare')
    assert not (cwd / 'fresh').exists()


def test_a_log_line_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    fd = os.open(tmp_path / 'log.jsonl', os.O_RDWR | os.O_CREAT | os.O_APPEND)
    files.append_line(fd, '{"iter": 1}\n')
    real_write = os.write
    monkeypatch.setattr(os, 'write', lambda fd, data: real_write(fd, data[:5]))  # the disk fills up
    with pytest.raises(OSError):
        files.append_line(fd, '{"iter": 2, "loss": 3.0}\n')
    monkeypatch.setattr(os, 'write', real_write)
    files.append_line(fd, '{"iter": 3}\n')
    os.close(fd)
    assert (tmp_path / 'log.jsonl').read_text() == '{"iter": 1}\n{"iter": 3}\n'


def test_a_full_disk_while_logging_is_one_line_naming_the_checkpoint(tmp_path, monkeypatch):
    p = progress.Progress(str(tmp_path), True, max_iters=1, eval_interval=1, log_interval=1, start_iter=0,
                          tokens_per_iter=1, flops_per_iter=1, peak_flops=None, lr_at=lambda it: 0.0,
                          on_disk=lambda: 'out/ckpt.pkl holds the model of iter 4')
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Progress took Ctrl-C: give it back
    monkeypatch.setattr(os, 'write', lambda fd, data: (_ for _ in ()).throw(OSError(28, 'No space left on device')))
    with pytest.raises(common.UserError, match=r'log.jsonl \(the disk is full\); out/ckpt.pkl holds the model of iter 4'):
        p.log({'iter': 1})


def test_empty_entries_of_the_compilation_cache_are_removed(tmp_path, monkeypatch):
    (tmp_path / 'good').write_bytes(b'compiled')
    (tmp_path / 'broken').write_bytes(b'')  # what a full disk leaves
    monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path))
    devices.cache_compilations()
    assert sorted(os.listdir(tmp_path)) == ['good']


def test_running_out_of_memory_is_one_line():
    code = 'import numpy as np, common\ncommon.errors_as_one_line()\nnp.ones((1 << 62,), np.uint8)\n'
    p = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert_one_error_line(p, 'out of memory', 'lower the batch size')


def test_xla_running_out_of_device_memory_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(sys, 'excepthook', sys.excepthook)  # given back after the test
    common.errors_as_one_line()
    error = jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 68719476736 bytes.\n'
                                       'BufferAssignment OOM Debugging.')  # what XLA raises when an allocation fails
    sys.excepthook(type(error), error, None)
    bug = RuntimeError('a bug')  # any other error keeps its traceback
    sys.excepthook(type(bug), bug, None)
    err = capsys.readouterr().err
    assert err.startswith('error: out of memory (RESOURCE_EXHAUSTED: Out of memory while trying to allocate '
                          '68719476736 bytes.): lower the batch size') and 'RuntimeError: a bug' in err, err


# ----------------------------------------------------------------------------- checkpoints as read back

def test_foreign_and_hand_edited_checkpoints_are_refused_naming_the_problem(tmp_path, work):
    good = files.load_pickle(work / 'base' / 'ckpt.pkl')
    leaves = good['opt_state']
    bad_leaf = [np.zeros((3, 3), np.float32) if i == 3 else a for i, a in enumerate(leaves)]
    cases = [
        ({'params': Foreign()}, 'refusing to load posix.system'),
        ({**good, 'params': [1, 2]}, 'its params are a list, not a dict of arrays'),
        ({**good, 'config': 'train.py'}, 'its config is a str, not a dict'),
        ({**good, 'model_args': {**good['model_args'], 'n_head': 3}}, 'n_embd (32) must be a multiple of n_head (3)'),
        ({**good, 'params': {**good['params'], 'wte': good['params']['wte'][:5]}}, 'params wte is float32 (5, 32)'),
        ({**good, 'iter_num': '12'}, "its iter_num is '12'"),
        ({**good, 'best_val_loss': None}, 'its best_val_loss is None'),
        ({**good, 'data_rng_state': {'state': 1}}, 'data_rng_state is not a numpy random state'),
        ({k: v for k, v in good.items() if k != 'opt_state'}, 'no opt_state'),
        ({**good, 'opt_state': 'x'}, 'its opt_state is a str'),
        ({**good, 'elapsed': '12 s'}, "its elapsed is '12 s'"),
        ({**good, 'elapsed': float('nan')}, 'its elapsed is nan'),
        ({**good, 'best_iter': -3}, 'its best_iter is -3'),
    ]
    for i, (ckpt, words) in enumerate(cases):
        out = tmp_path / str(i)
        out.mkdir()
        with open(out / 'ckpt.pkl', 'wb') as f:
            pickle.dump(ckpt, f)
        with pytest.raises(common.UserError, match=re.escape(words)):
            checkpoint.load_for_resume(str(out))
    expected = jax.tree_util.tree_leaves(jax.eval_shape(lambda: leaves))  # shapes as the optimizer has them
    with pytest.raises(common.UserError, match=r'leaf 3: float32 \(3, 3\)'):
        checkpoint.check_opt_state(bad_leaf, expected, 'out/ckpt.pkl')
    with pytest.raises(common.UserError, match='an optimizer state of another shape'):
        checkpoint.check_opt_state(leaves[:-1], expected, 'out/ckpt.pkl')


class Foreign:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


# ----------------------------------------------------------------------------- one clear line for every bad input

def configure_train(*args):
    """train.py's settings after these config files and flags, checked as train.py checks them."""
    settings = {name: value for name, value, *_ in configurator.read_settings(TRAIN)}
    settings['__file__'] = TRAIN
    return configurator.configure(settings, list(args), quiet=True)


@pytest.mark.parametrize('args, words', [
    (['--lerning_rate=1'], "did you mean 'learning_rate'"),
    (['--batch_size=0'], 'batch_size must be at least 1, not 0'),
    (['--gradient_accumulation_steps=0'], 'gradient_accumulation_steps must be at least 1'),
    (['--eval_iters=0'], 'eval_iters must be at least 1'),
    (['--learning_rate=-1'], 'learning_rate must be a positive number'),
    (["learning_rate = float('nan')"], 'learning_rate must be a positive number, not nan'),
    (['--max_iters=-5'], 'max_iters must be at least 0'),
    (['--beta2=1.5'], 'beta2 must be a number at least 0 and below 1'),
    (['--dropout=1.5'], 'dropout must be a number at least 0 and below 1, not 1.5'),
    (['--dtype=float64'], "dtype must be 'auto', 'float32', 'bfloat16' or 'float16'"),
    (['--optimizer=sgd'], "optimizer must be 'adamw' or 'muon'"),
    # what becomes non-finite, or overflows the 32-bit integers of the jitted step
    (["weight_decay = float('nan')"], 'weight_decay must be a number at least 0, not nan'),
    (['--min_lr=1e999'], 'min_lr must be a number at least 0, not inf'),
    (['--muon_weight_decay=-1e999'], 'muon_weight_decay must be a number at least 0'),
    (['--muon_lr=1e300'], "muon_lr must be a positive number within float32's range"),
    (["grad_clip = float('nan')"], 'grad_clip must be a number at least 0, not nan'),
    (['--lr_decay_iters=10000000000'], 'lr_decay_iters must be at most 2,147,483,647'),
    (['--max_iters=2147483648'], 'max_iters must be at most 2,147,483,647'),
    (['--seed=-1'], 'seed must be at least 0'),
    (['--seed=99999999999999999999'], 'seed must be at most 2,147,483,647'),
    (["peak_tflops = float('inf')"], 'peak_tflops must be a number at least 0, not inf'),
    (['--n_layer=0'], 'n_layer must be at least 1'),
])
def test_bad_settings_get_one_error_line(capsys, tmp_path, args, words):
    if not args[0].startswith('--'):  # a line of a config file (nan and inf cannot be written as flags)
        (tmp_path / 'config.py').write_text(args[0] + '\n')
        args = [str(tmp_path / 'config.py')]
    with pytest.raises(SystemExit) as e:
        configure_train(*args)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1 and words in err, err


def test_a_config_file_sets_only_known_keys_with_the_right_types(tmp_path, capsys):
    for config_file in sorted((ROOT / 'config').glob('*.py')):
        assigned = {n: v for n, v, *_ in configurator.read_settings(config_file)}
        config = configure_train(str(config_file))
        assert assigned and all(config[k] == v for k, v in assigned.items()), config_file.name
    (tmp_path / 'broken.py').write_text('batch_size = 4\nmax_iters = undefined_name\n')
    with pytest.raises(SystemExit):
        configure_train(str(tmp_path / 'broken.py'))
    assert 'broken.py:2: NameError' in capsys.readouterr().err


def test_a_mixed_or_half_written_dataset_is_refused(tmp_path, work):
    d = tmp_path / 'tiny'
    shutil.copytree(work / 'data' / 'tiny', d)
    (d / 'val.bin').write_bytes((d / 'val.bin').read_bytes()[:-20])  # another val.bin than meta.pkl's
    with pytest.raises(common.UserError, match='do not belong together'):
        datafiles.check_dataset(d)
    (d / '.incomplete').write_text('')
    with pytest.raises(common.UserError, match='half-written by an interrupted prepare script'):
        datafiles.check_dataset(d)


def write_bad_dataset(d, kind):
    ids = np.zeros(100, np.uint16)
    if kind == 'empty':
        datafiles.write_dataset(d, {'train.bin': lambda f: None, 'val.bin': lambda f: None}, {'vocab_size': 3})
    elif kind == 'odd':
        datafiles.write_dataset(d, {'train.bin': lambda f: f.write(b'abc'), 'val.bin': lambda f: f.write(b'abc')},
                                {'vocab_size': 3})
    elif kind == 'past_vocab':  # sizes as recorded, but ids the vocabulary of 3 does not have
        datafiles.write_dataset(d, {'train.bin': lambda f: datafiles.write_array(f, np.arange(5000, dtype=np.uint16)),
                                    'val.bin': lambda f: datafiles.write_array(f, ids)},
                                {'vocab_size': 3, 'itos': {0: 'a', 1: 'b', 2: 'c'}, 'stoi': {'a': 0, 'b': 1, 'c': 2}})
    elif kind == 'past_gpt2':  # GPT-2's BPE: ids 50257..50303 fit the model's padded table but are no tokens
        ids = np.full(5000, 50300, np.uint16)
        datafiles.write_dataset(d, {'train.bin': lambda f: datafiles.write_array(f, ids),
                                    'val.bin': lambda f: datafiles.write_array(f, ids)},
                                {'tokenizer': 'gpt2', 'vocab_size': 50257, 'token_bytes': np.ones(50257, np.int32)})
    else:
        d.mkdir()
        for split in ('train', 'val'):
            datafiles.write_array(open(d / f'{split}.bin', 'wb'), ids)
        if kind == 'garbage':
            (d / 'meta.pkl').write_bytes(b'\x80\x04garbage')
        elif kind == 'hostile':
            with open(d / 'meta.pkl', 'wb') as f:
                pickle.dump({'vocab_size': Foreign()}, f)
        # 'no_meta': a character dataset whose meta.pkl is lost


@pytest.mark.parametrize('kind, words', [
    ('empty', 'does not hold uint16 tokens'), ('odd', 'does not hold uint16 tokens'),
    ('garbage', 'meta.pkl is not readable'), ('hostile', 'refusing to load posix.system'),
    ('no_meta', 'has no meta.pkl, and its tokens (all below 1) are not GPT-2 BPE'),
])
def test_bad_datasets_are_refused_naming_the_fix(tmp_path, kind, words):
    write_bad_dataset(tmp_path / kind, kind)
    with pytest.raises(common.UserError, match=re.escape(words)):
        datafiles.check_dataset(tmp_path / kind)


def test_training_memory_past_the_machine_is_refused_before_any_work():
    cpu = jax.devices('cpu')[0]
    config = model.GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=65)
    small = devices.training_bytes(config, 256, 1, 4, np.float32, False, False)
    devices.check_fits(small, cpu, 'this run', 'lower batch_size')
    for need in (devices.training_bytes(config, 256 * 10 ** 7, 1, 4, np.float32, False, False),  # batch
                 devices.training_bytes(config, 256, 10 ** 9, 4, np.float32, False, False),  # accumulation
                 devices.training_bytes(config, 256, 1, 10 ** 9, np.float32, False, False)):  # eval_iters
        with pytest.raises(common.UserError, match=r'this run needs about [\d,.]+ GiB, more than .*: lower batch_size'):
            devices.check_fits(need, cpu, 'this run', 'lower batch_size')


@pytest.mark.parametrize('args, setup, words', [
    (['--dropout=1.5'], None, 'dropout must be a number at least 0 and below 1, not 1.5'),
    (['--init_from=resmue'], None, "(did you mean 'resume'?)"),
    (['--block_size=200000'], None, 'fewer than a sequence of block_size + 1'),
    (['--batch_size=100000000'], None, 'lower batch_size'),
    (['--n_embd=100000', '--n_head=1'], None, 'this run needs about'),
    (['--dataset=hostile'], 'hostile', 'refusing to load posix.system'),
    (['--dataset=past_vocab', '--n_layer=1'], 'past_vocab', 'past the vocabulary of 3 in its meta.pkl'),
    (['--dataset=past_gpt2', '--n_layer=1'], 'past_gpt2', 'holds token id 50300, past the vocabulary of 50257'),
    (['--out_dir=afile'], 'afile', 'afile is a file, not a folder'),
    (['--init_from=resume', '--out_dir=base', '--dataset=bpe'], 'bpe', 'a vocabulary of'),
    (['--init_from=resume', '--out_dir=foreign'], 'foreign', 'refusing to load posix.system'),
    (['--wandb_log=True'], 'no_wandb', 'pip install wandb'),
])
def test_train_py_reports_bad_inputs_in_one_line(cwd, args, setup, words):
    env = None
    if setup in ('hostile', 'past_vocab', 'past_gpt2', 'bpe'):  # a data folder of this test's own, beside the shared tiny
        d = cwd / 'data'
        tiny = Path(os.readlink(d)) / 'tiny'
        d.unlink()
        d.mkdir()
        os.symlink(tiny, d / 'tiny')
    if setup in ('hostile', 'past_vocab', 'past_gpt2'):
        write_bad_dataset(d / setup, setup)
    elif setup == 'bpe':
        ids = np.random.default_rng(0).integers(0, 50257, 5000, dtype=np.uint16)
        datafiles.write_dataset(d / 'bpe', {'train.bin': lambda f: datafiles.write_array(f, ids),
                                            'val.bin': lambda f: datafiles.write_array(f, ids)}, {'tokenizer': 'gpt2'})
    elif setup == 'afile':
        (cwd / 'afile').write_text('not a folder')
    elif setup == 'foreign':
        (cwd / 'foreign').mkdir()
        with open(cwd / 'foreign' / 'ckpt.pkl', 'wb') as f:
            pickle.dump({'params': Foreign()}, f)
    elif setup == 'no_wandb':
        (cwd / 'wandb.py').write_text('raise ImportError("no wandb here")\n')  # shadows any installed one
        env = {'PYTHONPATH': str(cwd)}
    p = run(cwd, *args, env=env, check=False)
    assert_one_error_line(p, words)
    assert 'pwned' not in p.stdout


def test_help_explains_every_setting():
    p = subprocess.run([sys.executable, TRAIN, '--help'], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    for name, default, comment, section in configurator.read_settings(TRAIN):
        assert f'{name} ' in p.stdout and (not comment or comment in p.stdout), name
    for words in ("init_from                   = 'scratch'", "'resume' (out_dir/ckpt.pkl)",
                  "'muon': Muon for the blocks' weight matrices", "\noptimizer\n", "\ndata\n"):
        assert words in p.stdout, words


def test_train_finds_the_projects_data_from_another_directory(work, tmp_path_factory):
    project = tmp_path_factory.mktemp('project')  # a copy of the project with its data inside
    for f in ROOT.glob('*.py'):  # the scripts and the modules they import
        (project / f.name).write_bytes(f.read_bytes())
    shutil.copytree(work / 'data', project / 'data')
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    p = subprocess.run([sys.executable, str(project / 'train.py'), *TINY, '--out_dir=out', '--max_iters=2',
                        '--eval_interval=2'], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (elsewhere / 'out' / 'ckpt.pkl').exists()  # new output goes where the user is
