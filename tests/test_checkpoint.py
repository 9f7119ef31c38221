"""checkpoint.load_run: what sample.py, export.py and the demos read, refused with one line when it
is not a model train.py wrote (a hand-edited, foreign or broken ckpt.pkl)."""
import copy
import os
import pickle
from dataclasses import asdict

import jax
import numpy as np
import pytest

import checkpoint
import files
from helpers import assert_one_error_line, run_in_process
import model
from model import GPTConfig

CFG = GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope='module')
def good():
    """A checkpoint as train.py writes it (the parts load_run reads)."""
    params = jax.tree_util.tree_map(np.asarray, model.init_params(CFG, jax.random.key(0)))
    return {'params': params, 'model_args': asdict(CFG), 'config': {'dataset': 'chars'}, 'iter_num': 7}


def edit(change):
    """An edit of a copy of the checkpoint, in place."""
    def edited(ckpt):
        change(ckpt)
        return ckpt
    return edited


def tensor(path, change):
    """An edit of one tensor: change(array) -> the new value, or None to delete it."""
    def edited(ckpt):
        *parents, last = path
        tree = ckpt['params']
        for key in parents:
            tree = tree[key]
        if change(tree[last]) is None:
            del tree[last]
        else:
            tree[last] = change(tree[last])
        return ckpt
    return edited


class Pickled:  # not a class the restricted unpickler lets in
    pass


EDITS = [  # (the checkpoint -> what ckpt.pkl holds instead, words of the one error line)
    (lambda c: ['not', 'a', 'dict'], ['not a checkpoint written by train.py (no params, model_args, config)']),
    (lambda c: {'something': 'else'}, ['not a checkpoint written by train.py (no params, model_args, config)']),
    (edit(lambda c: c.pop('params')), ['not a checkpoint written by train.py (no params)']),
    (edit(lambda c: c.pop('config')), ['not a checkpoint written by train.py (no config)']),
    (edit(lambda c: c.update(params=list(c['params'].values()))), ['its params are a list, not a dict of arrays']),
    (edit(lambda c: c.update(config='shakespeare_char')), ['its config is a str, not a dict']),
    (edit(lambda c: c.update(model_args=str(c['model_args']))), ['its model_args is a str, not a dict']),
    (edit(lambda c: c['model_args'].update(n_head=3)), ['model_args: n_embd (32) must be a multiple of n_head (3)']),
    (edit(lambda c: c['model_args'].update(vocab_size=0)), ['model_args: vocab_size must be a positive integer']),
    (edit(lambda c: c['model_args'].update(rotary=True)), ['model_args', "'rotary'"]),
    (edit(lambda c: c['model_args'].update(n_layer=3)), ['params h.', 'is float32 (2, ', 'expected float32 (3, ']),
    (tensor(('h', 'attn', 'c_attn', 'weight'), lambda a: a[:, :, :8]),
     ['params h.attn.c_attn.weight is float32 (2, 32, 8), expected float32 (2, 32, 96)']),
    (tensor(('wpe',), lambda a: None), ['params wpe is missing, expected float32 (16, 32)']),
    (tensor(('wte',), lambda a: a.astype(np.float64)), ['params wte is float64 (37, 32), expected float32 (37, 32)']),
    (tensor(('ln_f', 'weight'), lambda a: a.tolist()), ['params ln_f.weight is missing']),
    (edit(lambda c: c['params'].update(lm_head=np.zeros((37, 32), np.float32))),
     ['holds params that the model has no place for: lm_head']),
]


@pytest.mark.parametrize('change, words', EDITS, ids=range(len(EDITS)))
def test_a_checkpoint_that_is_not_a_model_is_one_error_line(tmp_path, capsys, good, change, words):
    files.save_pickle(tmp_path / 'ckpt.pkl', change(copy.deepcopy(good)))
    assert_one_error_line(run_in_process(capsys, checkpoint.load_run, str(tmp_path)),
                          f'{tmp_path}{os.sep}ckpt.pkl', *words)


def test_a_checkpoint_train_py_wrote_loads_with_its_config(tmp_path, good):
    files.save_pickle(tmp_path / 'ckpt.pkl', good)
    ckpt, config = checkpoint.load_run(str(tmp_path))
    assert config == CFG and ckpt['iter_num'] == 7


def test_no_file_a_foreign_class_or_a_cut_file_is_one_error_line(tmp_path, capsys, good):
    assert_one_error_line(run_in_process(capsys, checkpoint.load_run, str(tmp_path / 'nowhere')),
                          f'no checkpoint at {tmp_path / "nowhere" / "ckpt.pkl"}')
    with open(tmp_path / 'ckpt.pkl', 'wb') as f:
        pickle.dump({'params': Pickled()}, f)
    assert_one_error_line(run_in_process(capsys, checkpoint.load_run, str(tmp_path)),
                          'refusing to load', 'Pickled', 'only numpy arrays and plain Python containers')
    data = pickle.dumps(good)
    (tmp_path / 'ckpt.pkl').write_bytes(data[:len(data) // 2])
    assert_one_error_line(run_in_process(capsys, checkpoint.load_run, str(tmp_path)), 'ckpt.pkl is not readable')
