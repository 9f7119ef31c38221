"""Plumbing the scripts share: clear errors, atomic files and datasets, downloads, safe pickles,
paths that work from any directory, and a lock on an output directory.

model.py keeps its own small download, so that it can be copied alone.
"""
import argparse
import contextlib
import glob
import os
import pickle
import shutil
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))  # the project folder: data/, out*/ and config/ live here


class UserError(Exception):
    """A problem the user can fix: reported as one `error: ...` line and exit status 1."""


def fail(msg):
    """Report a problem the user can fix, in one line, and exit with status 1."""
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


def run_main(main, *args):
    """Run a script's main(): a UserError becomes one `error:` line and exit status 1, output
    piped into a program that stops reading (`| head`) ends quietly, and Ctrl-C exits 130."""
    try:
        return main(*args)
    except UserError as e:
        fail(e)
    except BrokenPipeError:
        quiet_broken_pipe()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown option, a bad value, parser.error(...)) raise UserError,
    so that under run_main they end like every other mistake: one `error:` line, exit status 1."""

    def error(self, message):
        raise UserError(f'{message} (--help lists the options)')


def quiet_broken_pipe():
    # stdout's reader has gone: point stdout at /dev/null so that Python's own flush at exit
    # does not raise again, and exit as a pipeline expects
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)


def find(path):
    """A relative path as the user meant it: from the working directory if it exists there,
    else from the project folder if it exists there (so scripts run from anywhere find the
    project's data/ and out*/), else from the working directory (where new files go)."""
    if os.path.isabs(path) or os.path.exists(path) or not os.path.exists(os.path.join(ROOT, path)):
        return path
    return os.path.join(ROOT, path)


def split_cpu(batch_size, devices=0):
    """Make JAX's CPU backend one device per core (at most `devices`, 0: up to 8), as many as
    split batch_size evenly, before JAX starts it. train.py then runs data parallel over them as
    over GPUs: each device's ops run on their own core without waiting for the other's (2 cores:
    the CPU recipe's step 28 -> 23 ms, the main job's 197 -> 182 ms). XLA_FLAGS's
    --xla_force_host_platform_device_count, if given, decides instead."""
    import jax
    if 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    most = devices or min(cores, 8)
    n = max(d for d in range(1, most + 1) if batch_size % d == 0)
    if jax.config.jax_num_cpu_devices != n:  # (bench.py sets it before it runs train.py)
        jax.config.update('jax_num_cpu_devices', n)


def cache_compilations():
    """Keep what JAX compiles on disk, in ~/.cache/gpt-jax/xla (or $JAX_COMPILATION_CACHE_DIR; set
    it empty to turn this off): the next run with the same shapes skips the compilation, several
    seconds of a small run's start."""
    import jax
    if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
        jax.config.update('jax_compilation_cache_dir', os.path.join(os.path.expanduser('~'), '.cache', 'gpt-jax', 'xla'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


# ----------------------------------------------------------------------------- atomic files

_UMASK = os.umask(0o22)  # read once (setting it is the only way to read it), then put back
os.umask(_UMASK)


def _temporary(directory, name):
    # a hidden .NAME*.tmp in directory, open for writing; mkstemp makes it 0600, but the file it
    # becomes should have the permissions any new file gets (readable by others, as the umask says)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{name}', suffix='.tmp')
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a hidden temporary file beside `path` for writing; when the block ends without an
    error it is flushed to disk and renamed over `path`, else removed. Any crash leaves either
    the old file or the new one, never a part of one (and a stale `.NAME*.tmp` at worst, which
    remove_stale_temporaries() cleans)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)  # make the rename itself durable


def remove_stale_temporaries(directory):
    """Remove what atomic writes killed half-way left in `directory` (hidden .NAME*.tmp files)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.startswith('.') and name.endswith('.tmp'):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


@contextlib.contextmanager
def atomic_folder(path, replace=False):
    """atomic_write for a folder: yields a hidden temporary folder beside `path` to fill; when the
    block ends without an error its files are flushed to disk and it is renamed to `path`, else
    removed. `path` may exist as an empty folder; replace=True swaps out a non-empty one as a whole
    (moved aside, the new folder renamed in, the old one deleted). A crash leaves the old folder or
    the new one, never a part of one; at worst a hidden `.NAME.*.tmp` beside it (between the two
    renames: the old folder), which the next call for the same path removes."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(parent), glob.escape(f'.{name}.') + '*.tmp')):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f'.{name}.', suffix='.tmp')
    os.chmod(tmp, 0o777 & ~_UMASK)  # a folder's usual permissions, not mkdtemp's private ones
    try:
        yield tmp
        for directory, _, files in os.walk(tmp):
            for f in files:
                fd = os.open(os.path.join(directory, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(directory)
        if replace and os.path.isdir(path) and os.listdir(path):
            old = tmp.removesuffix('.tmp') + '.old.tmp'
            os.rename(path, old)
            os.rename(tmp, path)
            _fsync_dir(parent)
            shutil.rmtree(old, ignore_errors=True)  # else the next call removes it
        else:
            os.rename(tmp, path)  # also over an empty folder; a non-empty one makes it fail
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)


INCOMPLETE = '.incomplete'  # present in a dataset folder while its files are being replaced


def write_dataset(out_dir, files, meta):
    """Write a dataset's files and meta.pkl so that the folder holds all of the new set or all of
    the old one. `files` maps a name to a function writing that file to an open binary file (for
    an array, f.write(a.tobytes()): numpy's a.tofile(f) hides why a write failed, e.g. a full
    disk), or a tuple of names to one function filling those files together in one pass (it gets
    one open file per name, readable too). Each file goes to a temporary name first, then a marker
    file is made, the files are renamed into place, and the marker is removed. A kill in between
    leaves the marker, which check_dataset refuses. meta.pkl records each file's size, so a file
    replaced or cut short later is noticed too. A failed write (a full disk) raises UserError."""
    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temporaries(out_dir)
    temps = {}
    try:
        for names, write in files.items():
            names = (names,) if isinstance(names, str) else names
            with contextlib.ExitStack() as stack:
                opened = []
                for name in names:
                    fd, temps[name] = _temporary(out_dir, name)
                    opened.append(stack.enter_context(os.fdopen(fd, 'w+b')))
                write(*opened)
                for f in opened:
                    f.flush()
                    os.fsync(f.fileno())
        meta = {**meta, 'files': {name: os.path.getsize(tmp) for name, tmp in temps.items()}}
        with open(os.path.join(out_dir, INCOMPLETE), 'w') as f:
            f.write('the files of this dataset are being replaced; if this stays, prepare it again\n')
        _fsync_dir(out_dir)
        for name, tmp in temps.items():
            os.replace(tmp, os.path.join(out_dir, name))
        with atomic_write(os.path.join(out_dir, 'meta.pkl')) as f:
            pickle.dump(meta, f)
        os.remove(os.path.join(out_dir, INCOMPLETE))
        _fsync_dir(out_dir)
    except BaseException as e:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.remove(tmp)
        if isinstance(e, OSError):
            raise UserError(f'could not write the dataset in {out_dir} ({e.strerror or e})') from None
        raise
    return meta


def check_dataset(data_dir, how_to_prepare):
    """The dataset's meta.pkl ({} for a GPT-2 BPE set made without one), after checking that
    the set is complete: not half-replaced, train.bin and val.bin present, sizes as recorded."""
    if os.path.exists(os.path.join(data_dir, INCOMPLETE)):
        raise UserError(f'{data_dir} was left half-written by an interrupted prepare script: '
                        f'run it again ({how_to_prepare})')
    meta_path = os.path.join(data_dir, 'meta.pkl')
    meta = load_pickle(meta_path) if os.path.exists(meta_path) else {}
    if not isinstance(meta, dict):
        raise UserError(f'{meta_path} is not a dataset description: prepare it again ({how_to_prepare})')
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.isfile(path):
            raise UserError(f'{path} not found: prepare the dataset first ({how_to_prepare})')
        size, want = os.path.getsize(path), meta.get('files', {}).get(f'{split}.bin')
        if want is not None and size != want:
            raise UserError(f'{path} has {size:,} bytes but its meta.pkl says {want:,}: the files do '
                            f'not belong together; prepare the dataset again ({how_to_prepare})')
        if size % 2 or size < 4:
            raise UserError(f'{path} ({size:,} bytes) does not hold uint16 tokens: prepare the '
                            f'dataset again ({how_to_prepare})')
    return meta


# ----------------------------------------------------------------------------- downloads

def download(url, path, what=None, progress=True):
    """Fetch url into path, resuming a partial download (path.part) with an HTTP Range request.
    path appears only once complete (its size checked against Content-Length), so an existing
    path is always a whole file. Raises UserError naming the fix."""
    import requests
    import urllib3
    part = path + '.part'
    have = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        with requests.get(url, stream=True, timeout=60, headers={'Range': f'bytes={have}-'} if have else {}) as r:
            if r.status_code == 416:  # the part holds the whole file already, or is foreign
                have, r = 0, requests.get(url, stream=True, timeout=60)
            r.raise_for_status()
            if r.status_code != 206:
                have = 0  # the server sends the whole file
            total = int(r.headers['Content-Length']) + have if 'Content-Length' in r.headers else None
            from tqdm import tqdm
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # only once the server answers
            # the bar is closed (its line ended) however the transfer ends, so an error starts its own line
            with open(part, 'ab' if have else 'wb') as f, \
                    tqdm(desc=what or os.path.basename(path), total=total, initial=have, unit='B', unit_scale=True,
                         unit_divisor=1024, file=sys.stderr, disable=not progress) as bar:
                for chunk in r.raw.stream(1 << 20, decode_content=False):  # the bytes as served
                    f.write(chunk)
                    bar.update(len(chunk))
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:  # urllib3's: cut off mid-stream
        reason = f'HTTP {e.response.status_code}' if getattr(e, 'response', None) is not None else type(e).__name__
        raise UserError(f'could not download {url} ({reason}); check the network and run again'
                        + (' to resume' if os.path.exists(part) and os.path.getsize(part) else '')) from None
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise UserError(f'{url}: got {size:,} of {total:,} bytes; run again to resume the download')
    os.replace(part, path)


# ----------------------------------------------------------------------------- safe pickles

# what numpy arrays, scalars and dtypes need to unpickle (numpy 1.x and 2.x spellings)
_ALLOWED = {
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    ('numpy.dtypes', 'Float32DType'), ('numpy.dtypes', 'Int32DType'), ('numpy.dtypes', 'Int64DType'),
    ('numpy.dtypes', 'UInt32DType'), ('numpy.dtypes', 'UInt16DType'), ('numpy.dtypes', 'UInt8DType'),
    ('numpy.dtypes', 'Float64DType'), ('numpy.dtypes', 'BoolDType'),
    ('builtins', 'dict'), ('builtins', 'list'), ('builtins', 'tuple'), ('builtins', 'set'),
    ('builtins', 'frozenset'), ('builtins', 'bytearray'), ('builtins', 'bytes'), ('builtins', 'complex'),
    ('collections', 'OrderedDict'), ('_codecs', 'encode'),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UserError(f'refusing to load {module}.{name}: these files may hold only numpy '
                        f'arrays and plain Python containers')


def load_pickle(path, file=None, **kwargs):
    """Read a pickle of numpy arrays and plain containers (checkpoints, meta.pkl, CIFAR-10's
    batches) from path, or from an open file. Any other class is refused, so a foreign or
    malicious pickle cannot run code. Raises UserError with a readable message."""
    if file is None and not os.path.isfile(path):
        raise UserError(f'no file at {path}')
    try:
        with (contextlib.nullcontext(file) if file is not None else open(path, 'rb')) as f:
            return _RestrictedUnpickler(f, **kwargs).load()
    except UserError as e:
        raise UserError(f'{path}: {e}') from None
    except Exception as e:  # truncated or not a pickle at all
        raise UserError(f'{path} is not readable ({type(e).__name__}: {e})') from None


def save_pickle(path, obj):
    """Write obj as a pickle, atomically (see atomic_write)."""
    with atomic_write(path) as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


# ----------------------------------------------------------------------------- checkpoints

def load_run(out_dir):
    """Read out_dir/ckpt.pkl as train.py writes it -> the checkpoint dict, after checking that it
    has what sample.py, export.py and the demos need. Raises UserError naming the problem."""
    path = os.path.join(out_dir, 'ckpt.pkl')
    if not os.path.isfile(path):
        raise UserError(f'no checkpoint at {path}')
    ckpt = load_pickle(path)
    missing = [k for k in ('params', 'model_args', 'config') if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f'{path} is not a checkpoint written by train.py (no {", ".join(missing)})')
    return ckpt


def lock_dir(directory, what='train.py'):
    """Take an exclusive lock on directory (a lock file, released by the OS when the process
    dies, however it dies) and return it; keep it referenced while the work goes on. A second
    run on the same directory stops at once with a clear message."""
    os.makedirs(directory, exist_ok=True)
    f = open(os.path.join(directory, '.lock'), 'w')
    try:
        import fcntl
    except ImportError:  # not POSIX (native Windows): no lock
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(f'another {what} is running on {directory}: wait for it to finish, or give '
                        f'this run another out_dir') from None
    return f


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


def append_line(fd, line):
    """Append one line to the file open at fd (O_APPEND), whole or not at all: a write cut short
    (a full disk) is undone, so the next line never glues onto half of this one."""
    data = line.encode() if isinstance(line, str) else line
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(28, os.strerror(28))  # ENOSPC: no room for the rest
    except OSError:
        os.ftruncate(fd, end)
        raise


def drop_partial_last_line(fd):
    """Cut a line that a crash left half-written off the end of a text file open at fd."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b'\n':
        return
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    os.ftruncate(fd, start + tail.rfind(b'\n') + 1 if b'\n' in tail else 0)


# ----------------------------------------------------------------------------- tokens

def token_byte_lengths(meta):
    """How many UTF-8 bytes each token id of a dataset decodes to (a numpy array indexed by
    token id), for losses in bits per byte; special tokens count 0. None if unknown."""
    if 'token_bytes' in meta:  # written by prepare_owt.py
        return np.asarray(meta['token_bytes'], np.int64)
    if 'itos' in meta:  # characters
        lengths = np.zeros(max(meta['itos']) + 1, np.int64)
        for i, ch in meta['itos'].items():
            lengths[i] = len(str(ch).encode('utf-8'))
        return lengths
    if meta.get('tokenizer') == 'gpt2' or 'vocab_size' not in meta:  # GPT-2 BPE
        try:
            return encoding_byte_lengths(gpt2_encoding()).astype(np.int64)
        except UserError:
            return None
    return None


def encoding_byte_lengths(enc):
    """UTF-8 bytes of each token id of a tiktoken.Encoding, as int32; special tokens count 0
    (they stand for no text)."""
    specials = {enc.encode_single_token(s) for s in enc.special_tokens_set}
    return np.array([0 if i in specials else len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)],
                    np.int32)


def gpt2_encoding():
    """tiktoken's GPT-2 BPE. Its files are downloaded once (TIKTOKEN_CACHE_DIR keeps them)."""
    import requests
    import tiktoken
    try:
        return tiktoken.get_encoding('gpt2')
    except requests.RequestException as e:
        raise UserError(f'could not download the GPT-2 BPE files tiktoken needs on first use ({type(e).__name__}); '
                        f'check the network, or set TIKTOKEN_CACHE_DIR to a folder that holds them') from None


def bpe_encoding(parts, where):
    """The tiktoken.Encoding of a meta.pkl's 'tokenizer': 'gpt2' for GPT-2's BPE, else a BPE of
    the dataset's own as the parts tiktoken.Encoding takes (pat_str, mergeable_ranks {bytes: id},
    special_tokens {str: id}). `where` names the file it came from, for the error message."""
    if parts == 'gpt2':
        return gpt2_encoding()
    import tiktoken
    try:
        return tiktoken.Encoding(name=os.path.basename(os.path.dirname(os.path.abspath(where))),
                                 pat_str=parts['pat_str'], mergeable_ranks=parts['mergeable_ranks'],
                                 special_tokens=parts['special_tokens'])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f'{where} holds a tokenizer tiktoken cannot read ({type(e).__name__}: {e}): '
                        f'rerun the dataset\'s prepare script') from None


def tokenizer(meta, where):
    """(encode, decode_bytes, description) for a dataset's tokens, from its meta.pkl: characters
    (stoi/itos), a BPE of its own (meta['tokenizer']: the parts of a tiktoken.Encoding), or
    GPT-2's BPE. encode(text) -> ids raises UserError for text the vocabulary cannot write."""
    if 'stoi' in meta or 'itos' in meta:
        stoi, itos = meta.get('stoi') or {}, meta.get('itos') or {}
        if not stoi or not itos:
            raise UserError(f'{where} holds no vocabulary (stoi/itos): rerun the dataset\'s prepare script')

        def encode(text):
            unknown = sorted(set(c for c in text if c not in stoi))
            if unknown:
                raise UserError(f'the prompt has characters outside the vocabulary: {"".join(unknown)!r}; '
                                f'the model knows only {"".join(sorted(stoi))!r}')
            return [stoi[c] for c in text]
        # an id the vocabulary lacks (the model's vocabulary may be padded past it) shows as U+FFFD
        return encode, lambda ids: ''.join(itos.get(int(i), '\ufffd') for i in ids).encode('utf-8'), \
            f'character vocabulary of {len(stoi)} from {where}'
    parts = meta.get('tokenizer', 'gpt2') if 'vocab_size' in meta else 'gpt2'
    enc = bpe_encoding(parts, where)
    what = "GPT-2's BPE" if parts == 'gpt2' else f'BPE of {enc.n_vocab:,} tokens from {where}'
    specials = set(enc.special_tokens_set)
    decode_bytes = lambda ids: b''.join(enc.decode_single_token_bytes(int(i)) if i < enc.n_vocab else b'\xef\xbf\xbd'
                                         for i in ids)  # GPT-2's vocabulary is padded to 50304 in the model
    return lambda text: enc.encode(text, allowed_special=specials), decode_bytes, what
