"""Files written whole or not at all, safe pickles, resumable downloads, whole log lines.

Every script writes through these, so a kill or a full disk leaves the old file or the new one,
never a part of one. A temporary is named after the file it becomes and the process writing it
(`.ckpt.pkl.<pid>-<random>.tmp`): a later run removes only the leftovers of its own files whose
writer has died, never another program's files or a running writer's.
"""
import contextlib
import os
import pickle
import re
import shutil
import stat
import sys
import tempfile

from common import UserError

_UMASK = os.umask(0o22)  # read once (setting it is the only way to read it), then put back
os.umask(_UMASK)


def _prefix(name):
    return f'.{name}.{os.getpid()}-'


def _writer_is_gone(tmp_name, name):
    # a temporary of `name` whose writing process no longer runs (a save killed half-way)
    m = re.fullmatch(re.escape(f'.{name}.') + r'(\d+)-[^/]*\.tmp', tmp_name)
    if not m or int(m.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs, under another user
        return False
    return False


def remove_stale_temporaries(directory, names):
    """Remove what writes of these file names, killed half-way, left in directory."""
    if not os.path.isdir(directory):
        return
    for entry in os.listdir(directory):
        if entry.endswith('.tmp') and any(_writer_is_gone(entry, name) for name in names):
            path = os.path.join(directory, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


def temporary(directory, name):
    """(fd, path) of a new temporary for `name` in directory, open for writing, with the
    permissions any new file gets (mkstemp's are 0600)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_prefix(name), suffix='.tmp')
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def give_usual_permissions(path):
    """The permissions any new file gets (0666 less the umask), for a file that a library wrote
    with its own (safetensors' are 0600)."""
    os.chmod(path, 0o666 & ~_UMASK)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory):
    """os.makedirs, with a clear UserError where a part of the path is a file or not writable."""
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f'{directory} cannot be made: a part of that path is a file') from None
    except OSError as e:
        raise UserError(f'{directory} cannot be made ({e.strerror})') from None


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary file beside `path` for writing; when the block ends without an error it
    is flushed to disk and renamed over `path`, else removed. Any crash leaves either the old
    file or the new one, never a part of one."""
    directory = os.path.dirname(os.path.abspath(path))
    make_dirs(directory)
    fd, tmp = temporary(directory, os.path.basename(path))
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
    fsync_dir(directory)  # make the rename itself durable


@contextlib.contextmanager
def atomic_folder(path, replace=False):
    """atomic_write for a folder: yields a temporary folder beside `path` to fill; when the block
    ends without an error its files are flushed to disk and it is renamed to `path`, else removed.
    `path` may exist as an empty folder; replace=True swaps out a non-empty one as a whole (moved
    aside, the new folder renamed in, the old one deleted). A crash leaves the old folder or the
    new one, never a part of one."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    make_dirs(parent)
    remove_stale_temporaries(parent, [name])
    tmp = tempfile.mkdtemp(dir=parent, prefix=_prefix(name), suffix='.tmp')
    os.chmod(tmp, 0o777 & ~_UMASK)  # a folder's usual permissions, not mkdtemp's private ones
    try:
        yield tmp
        for directory, _, names in os.walk(tmp):
            for f in names:
                fd = os.open(os.path.join(directory, f), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(directory)
        if replace and os.path.isdir(path) and os.listdir(path):
            old = tmp.removesuffix('.tmp') + '-old.tmp'
            os.rename(path, old)
            os.rename(tmp, path)
            fsync_dir(parent)
            shutil.rmtree(old, ignore_errors=True)  # else the next call removes it
        else:
            os.rename(tmp, path)  # also over an empty folder; a non-empty one makes it fail
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)


def not_a_regular_file(path):
    """None if path is a regular file (or a symbolic link to one), else what it is instead, for a
    message: reading a named pipe or a device would wait or run forever, a broken link fails."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return 'a broken symbolic link' if os.path.islink(path) else 'missing'
    except OSError as e:
        return f'unreadable ({e.strerror})'
    if stat.S_ISREG(mode):
        return None
    kinds = [(stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a named pipe'), (stat.S_ISSOCK, 'a socket'),
             (stat.S_ISCHR, 'a device'), (stat.S_ISBLK, 'a device')]
    return next((what for is_kind, what in kinds if is_kind(mode)), 'not a regular file')


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
    except MemoryError:
        raise UserError(f'{path} is too large to read into this machine\'s memory') from None
    except Exception as e:  # truncated or not a pickle at all
        raise UserError(f'{path} is not readable ({type(e).__name__}: {e})') from None


def save_pickle(path, obj):
    """Write obj as a pickle, atomically (see atomic_write)."""
    with atomic_write(path) as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


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
            make_dirs(os.path.dirname(os.path.abspath(path)))  # only once the server answers
            # the bar is closed (its line ended) however the transfer ends, so an error starts its own line
            with open(part, 'ab' if have else 'wb') as f, \
                    tqdm(desc=what or os.path.basename(path), total=total, initial=have, unit='B', unit_scale=True,
                         unit_divisor=1024, file=sys.stderr, disable=not progress) as bar:
                for chunk in r.raw.stream(1 << 20, decode_content=False):  # the bytes as served
                    f.write(chunk)
                    bar.update(len(chunk))
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:  # urllib3's: cut off mid-stream
        resume = ' to resume' if os.path.exists(part) and os.path.getsize(part) else ''
        if getattr(e, 'errno', None) == 28:  # ENOSPC: the network is not to blame
            raise UserError(f'could not download {url} to {part}: the disk is full; free some space and run '
                            f'again{resume}') from None
        reason = f'HTTP {e.response.status_code}' if getattr(e, 'response', None) is not None else \
            (e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__)
        raise UserError(f'could not download {url} ({reason}); check the network and run again{resume}') from None
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise UserError(f'{url}: got {size:,} of {total:,} bytes; run again to resume the download')
    os.replace(part, path)


# ----------------------------------------------------------------------------- log lines

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
