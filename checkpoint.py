"""A run's folder (out_dir) and its checkpoint: one run at a time, written whole, read back with
every check that tells a user what is wrong instead of a traceback.

out_dir/ckpt.pkl is a pickle of numpy arrays and plain containers (read back with a restricted
unpickler): params (GPT-2's tensor names, layers stacked under 'h'), model_args, the run's
config, and, to continue exactly: opt_state (the optimizer state's leaves), iter_num,
best_val_loss, data_rng_state (the data stream's position), elapsed (seconds of the runs so far),
the dataset's identity and its vocabulary ('tokenizer').
"""
import atexit
import difflib
import math
import os
from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np

import common
import files
import model
import tokenizer
from common import UserError


def lock_dir(directory, what='train.py'):
    """Create directory if needed and take an exclusive lock on it (a lock file, released by the
    OS when the process dies, however it dies), before anything in it is created or removed.
    Returns (the lock's open file, whether this call created the directory): keep the file
    referenced while the work goes on. A second run on the same directory stops at once."""
    created = False
    parent = os.path.dirname(os.path.abspath(directory))
    files.make_dirs(parent)
    try:
        os.mkdir(directory)  # atomic: of two runs that both found it missing, one creates it
        created = True
    except FileExistsError:
        if not os.path.isdir(directory):
            raise UserError(f'{directory} is a file, not a folder: choose another out_dir') from None
    except OSError as e:
        raise UserError(f'cannot make {directory} ({e.strerror})') from None
    try:
        f = open(os.path.join(directory, '.lock'), 'a')
    except OSError as e:
        raise UserError(f'cannot write to {directory} ({e.strerror})') from None
    try:
        import fcntl
    except ImportError:  # not POSIX (native Windows): no lock
        return f, created
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(f'another {what} is running on {directory}: wait for it to finish, or give '
                        f'this run another out_dir') from None
    return f, created


def remove_if_unused(directory, names):
    """Remove directory if it holds nothing but empty files of these names (a run that stopped at
    its checks); anything else in it, it is left as it is."""
    try:
        entries = os.listdir(directory)
        if all(e in names and os.path.getsize(os.path.join(directory, e)) == 0 for e in entries):
            for e in entries:
                os.remove(os.path.join(directory, e))
            os.rmdir(directory)
    except OSError:
        pass


class RunDir:
    """The out_dir of this run, held by process 0 until the run ends: the lock, the checkpoint
    path, and what the checkpoint on disk holds (for messages that must tell the truth)."""

    def __init__(self, out_dir):
        self.path, self.ckpt_path, self.saved = out_dir, os.path.join(out_dir, 'ckpt.pkl'), None
        self.lock, created = lock_dir(out_dir)
        if created:  # a run stopped before it wrote anything leaves no folder
            atexit.register(remove_if_unused, out_dir, ('.lock', 'log.jsonl'))
        files.remove_stale_temporaries(out_dir, ('ckpt.pkl', 'loss.png'))

    def on_disk(self):
        """What the checkpoint file holds now."""
        if self.saved is not None:
            it, val = self.saved
            return f'{self.ckpt_path} holds the model of iter {it}' + (f' (val loss {val:.4f})' if val is not None else '')
        return 'this run wrote no checkpoint' + (f'; {self.ckpt_path} is as it was' if os.path.exists(self.ckpt_path) else '')

    def save(self, ckpt, val_loss):
        """Write the checkpoint whole (a temporary file, flushed, renamed over the old one)."""
        try:
            files.save_pickle(self.ckpt_path, ckpt)
        except OSError as e:
            why = 'the disk is full' if e.errno == 28 else e.strerror
            raise UserError(f'could not write {self.ckpt_path} ({why}); {self.on_disk()}') from None
        self.saved = (ckpt['iter_num'], val_loss)


def check_sane(val_loss, best_val_loss, iter_num, on_disk):
    """A checkpoint is written only from a sane state: a non-finite val loss, or one far above
    the best so far (a diverging run), stops the run without saving."""
    if not math.isfinite(val_loss) or val_loss > best_val_loss + 1.0:
        what = 'not finite' if not math.isfinite(val_loss) else f'far above the best, {best_val_loss:.4f}'
        raise UserError(f'val loss {val_loss:.4f} at iter {iter_num} is {what}: the run diverges; stopping without '
                        f'saving: {on_disk()}. Lower learning_rate')


def would_replace(ckpt_path, init_from, overwrite, eval_only):
    """The one rule for a new run in an out_dir that holds a checkpoint, whatever it starts
    from: it continues it (resume), only reads it (eval_only), or replaces it on purpose."""
    if os.path.exists(ckpt_path) and init_from != 'resume' and not overwrite and not eval_only:
        raise UserError(f'{ckpt_path} already holds a checkpoint: continue it with --init_from=resume, give this '
                        f'run another --out_dir, or replace it on purpose with --overwrite=True')


# ----------------------------------------------------------------------------- reading a checkpoint back

def check_tree(tree, expected, where, what):
    """tree must be nested dicts of float32 arrays shaped as `expected` (shapes from jax.eval_shape)."""
    name = lambda path: '.'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)  # h.attn.c_attn.weight
    got = {name(p): a for p, a in jax.tree_util.tree_leaves_with_path(tree)} if isinstance(tree, dict) else None
    want = {name(p): a for p, a in jax.tree_util.tree_leaves_with_path(expected)}
    if got is None:
        raise UserError(f'{where} is not a checkpoint written by train.py: its {what} are a '
                        f'{type(tree).__name__}, not a dict of arrays')
    for key, spec in want.items():
        a = got.get(key)
        if not (isinstance(a, np.ndarray) and a.shape == tuple(spec.shape) and a.dtype == spec.dtype):
            found = 'missing' if a is None else f'{getattr(a, "dtype", type(a).__name__)} {getattr(a, "shape", "")}'
            raise UserError(f'{where} is not a checkpoint written by train.py: {what} {key} is {found}, '
                            f'expected {spec.dtype} {tuple(spec.shape)}')
    if extra := sorted(set(got) - set(want)):
        raise UserError(f'{where} holds {what} that the model has no place for: {", ".join(extra[:3])}')


def load_run(out_dir):
    """out_dir/ckpt.pkl as train.py writes it -> (checkpoint dict, GPTConfig), after checking
    that it holds a model: its settings and every tensor's shape (sample.py, export.py and the
    demos need no more). Raises UserError naming the problem."""
    where = os.path.join(out_dir, 'ckpt.pkl')
    if not os.path.isfile(where):
        raise UserError(f'no checkpoint at {where}')
    ckpt = files.load_pickle(where)
    missing = [k for k in ('params', 'model_args', 'config') if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f'{where} is not a checkpoint written by train.py (no {", ".join(missing)})')
    for key in ('model_args', 'config'):
        if not isinstance(ckpt[key], dict):
            raise UserError(f'{where} is not a checkpoint written by train.py: its {key} is a '
                            f'{type(ckpt[key]).__name__}, not a dict')
    try:
        config = model.GPTConfig(**ckpt['model_args'])
    except (TypeError, ValueError) as e:
        raise UserError(f'{where} is not a checkpoint written by train.py (model_args: {e})') from None
    shapes = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
    for key in ('params', 'train_params'):  # train_params: the weights as trained, beside their average
        if key in ckpt:
            check_tree(ckpt[key], shapes, where, key)
    return ckpt, config


def load_for_resume(out_dir):
    """load_run, and what train.py needs to continue exactly, checked."""
    ckpt, config = load_run(out_dir)
    where = os.path.join(out_dir, 'ckpt.pkl')
    missing = {'opt_state', 'iter_num', 'best_val_loss', 'data_rng_state'} - set(ckpt)
    if missing:
        raise UserError(f'{where} is not a checkpoint written by train.py (no {", ".join(sorted(missing))})')
    bad = (f'iter_num is {ckpt["iter_num"]!r}' if not is_count(ckpt['iter_num']) else
           f'best_val_loss is {ckpt["best_val_loss"]!r}' if type(ckpt['best_val_loss']) not in (int, float)
           or math.isnan(ckpt['best_val_loss']) else
           f'opt_state is a {type(ckpt["opt_state"]).__name__}' if not isinstance(ckpt['opt_state'], list) else
           f'elapsed is {ckpt["elapsed"]!r}' if 'elapsed' in ckpt and not is_seconds(ckpt['elapsed']) else
           f'best_iter is {ckpt["best_iter"]!r}' if ckpt.get('best_iter') is not None
           and not is_count(ckpt['best_iter']) else None)
    if bad is None:
        try:
            np.random.default_rng().bit_generator.state = ckpt['data_rng_state']
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            bad = f'data_rng_state is not a numpy random state ({e})'
    if bad:
        raise UserError(f'{where} is not a checkpoint train.py can continue: its {bad}')
    return ckpt, config


def is_count(x):  # an iteration number
    return type(x) is int and x >= 0


def is_seconds(x):  # a finite, non-negative number of seconds
    return type(x) in (int, float) and math.isfinite(x) and x >= 0


def resume_settings(ckpt, config, overridden, optimizer, where):
    """A run resumes with its own model: the checkpoint's shape settings go into config, and one
    given for this run that disagrees with the checkpoint is refused, naming both values."""
    for key in ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias'):
        if key in overridden and config[key] != ckpt['model_args'][key]:
            raise UserError(f'{key} is {config[key]!r} for this run but {ckpt["model_args"][key]!r} in {where}: '
                            f'a run resumes with its own model; drop --{key}, or train a new model in another out_dir')
        config[key] = ckpt['model_args'][key]
    if ckpt['config'].get('optimizer', 'adamw') != optimizer:
        raise UserError(f'{where} was trained with optimizer={ckpt["config"].get("optimizer", "adamw")!r}: '
                        f'resume with the same optimizer')


def check_opt_state(leaves, expected, where):
    """The checkpoint's optimizer state (its list of leaves) against the shapes this run's
    optimizer has (from jax.eval_shape)."""
    if len(leaves) != len(expected):
        raise UserError(f'{where} holds an optimizer state of another shape: resume with the settings it was '
                        f'trained with')
    for i, (a, spec) in enumerate(zip(leaves, expected)):
        if np.shape(a) != tuple(spec.shape) or np.asarray(a).dtype != spec.dtype:
            raise UserError(f'{where} holds an optimizer state of another shape (leaf {i}: '
                            f'{np.asarray(a).dtype} {np.shape(a)}, expected {spec.dtype} {tuple(spec.shape)}): '
                            f'resume with the settings it was trained with')


def check_same_dataset(ckpt, identity, vocab_size, data_dir, where):
    """A run resumes on the dataset it was trained on: the same vocabulary and the same files."""
    if ckpt['model_args']['vocab_size'] != vocab_size:
        raise UserError(f'{where} has a vocabulary of {ckpt["model_args"]["vocab_size"]} tokens but {data_dir} one of '
                        f'{vocab_size}: resume on the dataset it was trained on (--dataset={ckpt["config"].get("dataset")})')
    saved = ckpt.get('dataset')
    if not isinstance(saved, dict):  # an older checkpoint: only the vocabulary's size can be compared
        return
    if saved.get('vocabulary') != identity['vocabulary']:
        raise UserError(f'{where} was trained on {saved.get("name")!r}, whose vocabulary differs from that of '
                        f'{data_dir}: resume on the dataset it was trained on (--dataset={saved.get("name")})')
    if saved.get('files') != identity['files']:
        tokens = lambda f: ', '.join(f'{s} {n // 2:,} tokens' for s, n in f.items()) if isinstance(f, dict) else f
        raise UserError(f'{where} was trained on {saved.get("name")!r} ({tokens(saved.get("files"))}), '
                        f'not on the text in {data_dir} ({tokens(identity["files"])}): resume on the same data, '
                        f'or start a new run in another out_dir')


def gpt2_weights(init_from):
    """model.from_pretrained, its failures (missing, broken, not downloadable) as a UserError."""
    try:
        return model.from_pretrained(init_from)
    except (ValueError, OSError, RuntimeError) as e:
        raise UserError(e) from None


def gpt2_to_finetune(init_from, meta, data_dir, block_size, dropout):
    """OpenAI's GPT-2 weights (a size, downloaded once, or a folder) to train on a dataset of GPT-2
    BPE -> (params, GPTConfig) with this run's dropout, and cut to block_size positions when
    that is shorter than GPT-2's (model surgery)."""
    if not tokenizer.is_gpt2(meta):
        raise UserError(f'{data_dir} has its own vocabulary of {meta["vocab_size"]} tokens; GPT-2 weights need a '
                        f'dataset tokenized with GPT-2 BPE (prepare_owt.py without --vocab_size)')
    params, config = gpt2_weights(init_from)
    if config.vocab_size < tokenizer.GPT2_VOCAB:
        raise UserError(f"{init_from} holds a model of {config.vocab_size} tokens, fewer than GPT-2 BPE's "
                        f'{tokenizer.GPT2_VOCAB:,} that {data_dir} is tokenized with: start from GPT-2 weights of '
                        f'the full vocabulary')
    if block_size < config.block_size:
        params['wpe'] = params['wpe'][:block_size]
    return params, model.GPTConfig(**{**asdict(config), 'dropout': dropout, 'block_size': min(block_size, config.block_size)})


def check_init_from(init_from, own):
    """init_from is one of `own` ('scratch', 'resume'), a GPT-2 size, or a folder."""
    if init_from in (*own, *model.GPT2_SIZES) or os.path.isdir(init_from):
        return
    close = difflib.get_close_matches(init_from, [*own, *model.GPT2_SIZES], n=1)
    raise UserError(f"init_from must be {', '.join(repr(o) for o in own)}, one of {', '.join(model.GPT2_SIZES)} or a "
                    f"folder with GPT-2 weights, not {init_from!r}" + (f" (did you mean '{close[0]}'?)" if close else ''))


# ----------------------------------------------------------------------------- a model to use

def load_model(init_from, out_dir):
    """The model a script evaluates or samples, with its tokenizer -> (params, GPTConfig, Tokenizer):
    init_from 'resume' reads out_dir/ckpt.pkl and the vocabulary recorded with it (an older
    checkpoint: its dataset's meta.pkl), one of model.GPT2_SIZES or a folder reads GPT-2 weights
    and the folder's tokenizer (GPT-2's BPE unless export.py wrote another)."""
    if init_from == 'resume':
        ckpt, config = load_run(common.find(out_dir))
        params = jax.tree_util.tree_map(jnp.asarray, ckpt['params'])
        vocab = ckpt.get('tokenizer')  # written by train.py since it records the tokenizer
        if vocab is None:  # an older checkpoint: the tokenizer is the dataset's
            dataset, data_dir = str(ckpt['config'].get('dataset')), ckpt['config'].get('data_dir')
            meta_path = os.path.join(str(data_dir) if data_dir else common.find(os.path.join('data', dataset)),
                                     'meta.pkl')
            if os.path.exists(meta_path):
                vocab = files.load_pickle(meta_path)
            elif config.vocab_size not in (tokenizer.GPT2_VOCAB, tokenizer.GPT2_PADDED_VOCAB):
                raise UserError(f'{meta_path} not found: the checkpoint was trained on {dataset}, whose vocabulary '
                                f'({config.vocab_size} tokens) is in that file; prepare the dataset again')
        return params, config, tokenizer.from_meta(vocab or {}, f'{out_dir}/ckpt.pkl')
    if init_from in model.GPT2_SIZES or os.path.isdir(init_from):
        params, config = gpt2_weights(init_from)
        tok = tokenizer.from_folder(init_from) if os.path.isdir(init_from) else tokenizer.from_meta({}, init_from)
        return params, config, tok
    raise UserError(f"init_from must be 'resume', one of {', '.join(model.GPT2_SIZES)} or a folder with GPT-2 "
                    f"weights, not {init_from!r}")
