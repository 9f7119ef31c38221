"""A dataset folder (data/<name>/: train.bin, val.bin, meta.pkl), written complete or not at all,
checked before training, and known by what identifies it.

train.bin and val.bin are flat uint16 token ids. meta.pkl says how to read them: the tokenizer
(characters: stoi/itos; a BPE of its own; GPT-2's), vocab_size, the size of each file, and for
fixed-length examples (the demos) example_len and prompt_len.
"""
import contextlib
import hashlib
import os
import pickle

import numpy as np

import files
from common import UserError

INCOMPLETE = '.incomplete'  # present in a dataset folder while its files are being replaced
HOW_TO_PREPARE = 'python prepare_char.py for shakespeare_char, python prepare_owt.py for openwebtext'


def write_dataset(out_dir, writers, meta):
    """Write a dataset's files and meta.pkl so that the folder holds all of the new set or all of
    the old one. `writers` maps a name to a function writing that file to an open binary file (for
    an array: write_array), or a tuple of names to one function filling those files together in
    one pass (it gets one open file per name, readable too). Each file, meta.pkl last, goes to a
    temporary name first; then a marker file is made, the files are renamed into place, and the
    marker is removed. A kill in between leaves the marker, which check_dataset refuses. meta.pkl
    records each file's size, so a file replaced or cut short later is noticed too. A failed
    write (a full disk) raises UserError and leaves the old set as it was."""
    files.make_dirs(out_dir)
    names = [n for key in writers for n in ((key,) if isinstance(key, str) else key)]
    files.remove_stale_temporaries(out_dir, names + ['meta.pkl'])
    marker = os.path.join(out_dir, INCOMPLETE)
    had_marker, renaming = os.path.exists(marker), False  # (a marker from before: the old set is half-written)
    temps = {}
    try:
        for key, write in writers.items():
            with contextlib.ExitStack() as stack:
                opened = []
                for name in ((key,) if isinstance(key, str) else key):
                    fd, temps[name] = files.temporary(out_dir, name)
                    opened.append(stack.enter_context(os.fdopen(fd, 'w+b')))
                write(*opened)
                for f in opened:
                    f.flush()
                    os.fsync(f.fileno())
        meta = {**meta, 'files': {name: os.path.getsize(tmp) for name, tmp in temps.items()}}
        fd, temps['meta.pkl'] = files.temporary(out_dir, 'meta.pkl')
        with os.fdopen(fd, 'wb') as f:
            pickle.dump(meta, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        with open(marker, 'w') as f:
            f.write('the files of this dataset are being replaced; if this stays, prepare it again\n')
        files.fsync_dir(out_dir)
        renaming = True
        for name, tmp in temps.items():
            os.replace(tmp, os.path.join(out_dir, name))
        os.remove(marker)
        files.fsync_dir(out_dir)
    except BaseException as e:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.remove(tmp)
        if not renaming and not had_marker:  # the old set is untouched: no marker may say otherwise
            with contextlib.suppress(OSError):
                os.remove(marker)
        if isinstance(e, OSError):
            why = 'the disk is full' if e.errno == 28 else (e.strerror or str(e))
            raise UserError(f'could not write the dataset in {out_dir} ({why})') from None
        raise
    return meta


def write_array(f, a):
    """Write array a to the open file f, every byte or an OSError: numpy's a.tofile(f) can drop
    the tail of a write on a full disk without saying so."""
    data = memoryview(np.ascontiguousarray(a)).cast('B')
    while data:
        n = f.write(data)
        if not n:
            raise OSError(28, os.strerror(28))
        data = data[n:]


def check_dataset(data_dir, how_to_prepare=HOW_TO_PREPARE):
    """The dataset's meta.pkl ({} for a GPT-2 BPE set made without one, as nanoGPT's own prepare
    scripts make), after checking that the set is complete: not half-replaced, train.bin and
    val.bin present, sizes as recorded."""
    if os.path.exists(os.path.join(data_dir, INCOMPLETE)):
        raise UserError(f'{data_dir} was left half-written by an interrupted prepare script: '
                        f'run it again ({how_to_prepare})')
    meta_path = os.path.join(data_dir, 'meta.pkl')
    meta = files.load_pickle(meta_path) if os.path.exists(meta_path) else {}
    if not isinstance(meta, dict):
        raise UserError(f'{meta_path} is not a dataset description: prepare it again ({how_to_prepare})')
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.isfile(path):
            raise UserError(f'{path} not found: prepare the dataset first ({how_to_prepare})')
        size, want = os.path.getsize(path), (meta.get('files') or {}).get(f'{split}.bin')
        if want is not None and size != want:
            raise UserError(f'{path} has {size:,} bytes but its meta.pkl says {want:,}: the files do '
                            f'not belong together; prepare the dataset again ({how_to_prepare})')
        if size % 2 or size < 4:
            raise UserError(f'{path} ({size:,} bytes) does not hold uint16 tokens: prepare the '
                            f'dataset again ({how_to_prepare})')
    if not meta:  # GPT-2 BPE text has ids in the thousands within its first sentences
        head = np.memmap(os.path.join(data_dir, 'val.bin'), dtype=np.uint16, mode='r')[:1_000_000]
        if int(head.max()) < 1000:
            raise UserError(f'{data_dir} has no meta.pkl, and its tokens (all below {int(head.max()) + 1}) are not '
                            f'GPT-2 BPE: its vocabulary is lost; prepare the dataset again ({how_to_prepare})')
    return meta


def open_splits(data_dir, min_tokens):
    """train.bin and val.bin as read-only uint16 arrays (np.memmap: read as needed), each checked
    to hold at least min_tokens tokens (one training sequence and its next token)."""
    splits = {split: np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')
              for split in ('train', 'val')}
    for split, data in splits.items():
        if len(data) < min_tokens:
            raise UserError(f'{data_dir}/{split}.bin has {len(data):,} tokens, fewer than a sequence of block_size + 1 '
                            f'({min_tokens}); lower block_size or prepare more text')
    return splits


def identity(data_dir, meta):
    """What a checkpoint records of the dataset it was trained on, to resume on the same one:
    its folder's name, a digest of its vocabulary, and the size of each file."""
    vocab = {k: meta[k] for k in ('stoi', 'itos', 'tokenizer', 'vocab_size') if k in meta} or 'gpt2'
    return {'name': os.path.basename(os.path.normpath(data_dir)),
            'vocabulary': hashlib.sha256(pickle.dumps(vocab, protocol=4)).hexdigest()[:16],
            'files': {s: os.path.getsize(os.path.join(data_dir, f'{s}.bin')) for s in ('train', 'val')}}
