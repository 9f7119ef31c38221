"""Checkpoints as plain pickles: written atomically, read back with a restricted unpickler.

A checkpoint holds only builtin containers (dict, list, tuple), numbers, strings and numpy
arrays. Loading refuses any other class, so a foreign or malicious pickle cannot run code.
"""
import os
import pickle
import tempfile

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
    ('builtins', 'frozenset'), ('builtins', 'bytearray'), ('builtins', 'complex'),
    ('collections', 'OrderedDict'), ('_codecs', 'encode'),
}


class CheckpointError(Exception):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(f'refusing to load {module}.{name}: checkpoints may hold only '
                              f'numpy arrays and plain Python containers')


def load(path):
    """Read a checkpoint written by `save`. Raises CheckpointError with a readable message."""
    if not os.path.isfile(path):
        raise CheckpointError(f'no checkpoint at {path}')
    try:
        with open(path, 'rb') as f:
            return _RestrictedUnpickler(f).load()
    except CheckpointError as e:
        raise CheckpointError(f'{path}: {e}') from None
    except Exception as e:  # truncated or not a pickle at all
        raise CheckpointError(f'{path} is not a readable checkpoint ({type(e).__name__}: {e})') from None


def save(path, obj):
    """Write atomically: a temporary file in the same directory, flushed to disk, then renamed
    over `path`. A crash at any point leaves either the old checkpoint or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_run(out_dir):
    """Read out_dir/ckpt.pkl as written by train.py -> (params, model_args, run config).
    Raises CheckpointError naming the problem (missing, unreadable, or not train.py's)."""
    path = os.path.join(out_dir, 'ckpt.pkl')
    ckpt = load(path)
    try:
        return ckpt['params'], dict(ckpt['model_args']), dict(ckpt.get('config', {}))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f'{path} is not a checkpoint written by train.py '
                              f'({type(e).__name__}: {e})') from None
