# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""No path leaves its root: the one place that decides whether a path stays where it was given.

The upgrade runs as root, and the installation folders it reads and writes are writable by the product's service
account.  A symlink planted there (``escape -> /etc``) must never make the upgrade read or write outside the
folder it was told to work in.  These helpers check a relative path under a root component by component with
``lstat``, so *whichever* component is a symlink is seen, and resolve every symlink to find out where it leads:

* :func:`check_option_path` refuses a path option with a ``..`` component or a NUL byte (before anything is touched);
* :func:`split_relative` refuses an absolute relative path or one with ``..``;
* :func:`resolve_under` returns where ``root/rel`` really is, or raises :class:`PathEscape` naming the first
  component whose symlink leads outside ``root``;
* :func:`open_under` opens ``root/rel`` by directory file descriptors with ``O_NOFOLLOW``, after
  :func:`resolve_under`, so a component swapped for a symlink between the check and the use fails the open
  instead of being followed;
* :func:`link_target_inside` tells whether a symlink's text, recreated at another place under another root, stays
  inside it;
* :func:`check_name_part` refuses a value that becomes part of a file name (a backup label) when it could name a folder;
* :func:`archive_escapes` replays an archive's member list (names, symlinks, hard links) on a virtual tree and
  names the members that would leave the folder they are unpacked into.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

MAX_LINKS = 40  # the kernel's own limit of symlinks followed in one lookup


class PathEscape(ValueError):
    """A path leaves its root (``..``, an absolute item, or a symlink leading out); the message names the component."""


def is_within(path, root):
    """True when the normalised absolute ``path`` is ``root`` or lies below it."""
    root = root.rstrip('/') or '/'
    if path == root or root == '/':
        return True
    return path.startswith(root + '/')


def check_option_path(value, label):
    """Refuse a path option that has a ``..`` component or a NUL byte; return it unchanged otherwise.

    A ``..`` makes it unclear which folder a path names once a component is a symlink (``/srv/pmod/../x`` is not
    ``/srv/x`` when ``/srv/pmod`` links elsewhere), so options naming roots must be given without it.
    """
    if value is None:
        return None
    if '\x00' in value:
        raise PathEscape('%s %r contains a NUL byte; refused' % (label, value))
    if '..' in value.replace('\\', '/').split('/'):
        raise PathEscape('%s %s contains a ".." component; give the path without ".." (refused, nothing was touched)'
                         % (label, value))
    return value


def split_relative(rel, label='path'):
    """The components of a relative ``/`` path without ``.``/empty ones; refuse absolute paths, ``..`` and NUL."""
    if not isinstance(rel, str):
        raise PathEscape('%s %r is not a string' % (label, rel))
    if '\x00' in rel:
        raise PathEscape('%s %r contains a NUL byte; refused' % (label, rel))
    text = rel.replace('\\', '/')
    if text.startswith('/') or (len(text) > 1 and text[1] == ':' and text[0].isalpha()):
        raise PathEscape('%s %r is absolute; it must be relative to its root' % (label, rel))
    parts = [p for p in text.split('/') if p not in ('', '.')]
    if '..' in parts:
        raise PathEscape('%s %r leaves its root (..); refused' % (label, rel))
    return parts


def resolve_under(root, rel, label='path', follow_last=True):
    """Where ``root/rel`` really is, checked component by component; raise :class:`PathEscape` when it leaves ``root``.

    Each existing component is looked at with ``lstat``; a symlink is resolved (its whole chain, relative or
    absolute) and must lead to ``root`` or below, else the error names that component and where it leads.  The
    walk goes on from the resolved place, so a symlink inside ``root`` that points to another place inside is
    allowed.  Components that do not exist yet are appended as they are (they cannot be links).

    With ``follow_last=False`` a symlink as the last component is checked but not followed: the path of the
    link itself is returned (to copy it as a link).  The result never contains a symlink otherwise.
    """
    root_real = os.path.realpath(root)
    parts = split_relative(rel, label)
    current = root_real
    for index, part in enumerate(parts):
        candidate = os.path.join(current, part)
        shown = '/'.join(parts[:index + 1])
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.join(candidate, *parts[index + 1:])
        except NotADirectoryError:
            raise PathEscape('%s %s: %s is not a directory' % (label, rel, '/'.join(parts[:index]))) from None
        last = index == len(parts) - 1
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(candidate)
            if not is_within(real, root_real):
                raise PathEscape('%s %s: %s is a symlink to %s, which leads outside %s (to %s); refused, nothing was written'
                                 % (label, rel, shown, _readlink(candidate), root, real))
            if last and not follow_last:
                return candidate
            current = real
        elif not last and not stat.S_ISDIR(st.st_mode):
            raise PathEscape('%s %s: %s is not a directory' % (label, rel, shown))
        else:
            current = candidate
    return current


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return '?'


def open_under(root, rel, flags=os.O_RDONLY, mode=0o600, label='path'):
    """Open ``root/rel`` (checked by :func:`resolve_under`) without following any symlink; return the fd.

    The resolved path is opened one directory at a time from ``root`` with ``O_NOFOLLOW`` (and ``O_DIRECTORY``
    for the folders), so a component replaced by a symlink after the check makes the open fail (ELOOP/ENOTDIR)
    instead of being followed out of ``root``.
    """
    root_real = os.path.realpath(root)
    real = resolve_under(root, rel, label)
    parts = [p for p in os.path.relpath(real, root_real).split(os.sep) if p not in ('', '.')]
    nofollow = getattr(os, 'O_NOFOLLOW', 0)
    cloexec = getattr(os, 'O_CLOEXEC', 0)
    directory = getattr(os, 'O_DIRECTORY', 0)
    if not parts:
        return os.open(root_real, flags | cloexec | directory)
    dir_fd = os.open(root_real, os.O_RDONLY | directory | cloexec)
    try:
        for part in parts[:-1]:
            try:
                fd = os.open(part, os.O_RDONLY | directory | nofollow | cloexec, dir_fd=dir_fd)
            except OSError as exc:
                raise _changed(exc, label, rel) from None
            os.close(dir_fd)
            dir_fd = fd
        try:
            return os.open(parts[-1], flags | nofollow | cloexec, mode, dir_fd=dir_fd)
        except OSError as exc:
            raise _changed(exc, label, rel) from None
    finally:
        os.close(dir_fd)


def _changed(exc, label, rel):
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return PathEscape('%s %s: a component became a symlink while it was being read; refused' % (label, rel))
    return exc


def read_under(root, rel, limit=None, label='path'):
    """The bytes of the regular file ``root/rel`` (opened by :func:`open_under`); ``limit`` caps the size read."""
    fd = open_under(root, rel, os.O_RDONLY, label=label)
    with os.fdopen(fd, 'rb') as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PathEscape('%s %s is not a regular file; refused' % (label, rel))
        return handle.read() if limit is None else handle.read(limit + 1)


def check_name_part(value, label):
    """Refuse a value that becomes part of a file name when it could name another folder (``/``, ``\\``, ``..``, NUL)."""
    if value is None:
        return None
    if any(c in value for c in ('/', '\\', '\x00')) or '..' in value:
        raise PathEscape('%s %r may not contain "/", "\\", ".." or a NUL byte: it is part of a file name; refused' % (label, value))
    return value


def tar_member(member):
    """``(name, kind, linkname)`` of a ``tarfile.TarInfo`` for :func:`archive_escapes`."""
    if member.isdir():
        kind = 'dir'
    elif member.issym():
        kind = 'symlink'
    elif member.islnk():
        kind = 'hardlink'
    else:
        kind = 'file' if member.isfile() else 'other'
    return member.name, kind, member.linkname


def link_target_inside(link_rel, target):
    """True when a symlink at ``link_rel`` (relative ``/`` path) whose text is ``target`` stays inside its root, by text.

    Only the text is judged (absolute targets and ``..`` climbing above the root are outside); the symlinks the
    target passes through are for :func:`resolve_under` to check once the link exists.
    """
    if not target or target.startswith('/') or '\x00' in target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link_rel), target))
    return not (joined == '..' or joined.startswith('../') or joined.startswith('/'))


def archive_escapes(members, links_may_leave=False):
    """Names of archive members that would leave the folder they are unpacked into.

    ``members``: ``(name, kind, linkname)`` in archive order, ``kind`` one of ``file``, ``dir``, ``symlink``,
    ``hardlink``, ``other``.  The members are replayed on a virtual tree, so what the disk would see is judged: a
    symlink member followed by a member written through it (``a -> /tmp`` then ``a/x``, or ``a -> b/..`` after
    ``b -> .``), a symlink whose target leaves, a hard link to a path outside or to a symlink member, absolute
    names and ``..``.  Returns ``['name: why', ...]`` (empty when the archive stays inside).

    With ``links_may_leave`` (a backup of a folder, restored as it was) a symlink member may point outside: it is
    recreated as a link, but a member written through it is still refused.
    """
    links = {}
    kinds = {}
    bad = []

    def resolve(path, follow_last):
        """Component list of ``path`` under the virtual root, following member symlinks; None when it leaves."""
        pending = [p for p in path.split('/') if p not in ('', '.')]
        done = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == '..':
                if not done:
                    return None
                done.pop()
                continue
            key = '/'.join(done + [part])
            if key in links and (pending or follow_last):
                hops += 1
                if hops > MAX_LINKS:
                    return None
                target = links[key]
                if target.startswith('/'):
                    return None
                pending = [p for p in target.split('/') if p not in ('', '.')] + pending
                continue
            done.append(part)
        return done

    for name, kind, linkname in members:
        clean = name[2:] if name.startswith('./') else name
        if not clean or clean.startswith('/') or '\x00' in clean or (len(clean) > 1 and clean[1] == ':'):
            bad.append('%s: absolute name' % name)
            continue
        if '..' in clean.replace('\\', '/').split('/'):
            bad.append('%s: ".." in the name' % name)
            continue
        where = resolve(clean, follow_last=False)
        if where is None or not where:
            bad.append('%s: written through a symlink that leads outside' % name)
            continue
        key = '/'.join(where)
        if kind == 'symlink':
            if not linkname:
                bad.append('%s: symlink without a target' % name)
                continue
            if linkname.startswith('/'):
                if not links_may_leave:
                    bad.append('%s -> %s: absolute symlink' % (name, linkname))
                    continue
                links[key] = linkname  # resolving through it leaves: what is written through it is refused
                kinds[key] = kind
                continue
            links[key] = linkname
            parent = '/'.join(where[:-1])
            if resolve(posixpath.join(parent, linkname) if parent else linkname, follow_last=True) is None and not links_may_leave:
                bad.append('%s -> %s: symlink leads outside (or loops)' % (name, linkname))
                del links[key]
                continue
        elif kind == 'hardlink':
            target = resolve(linkname or '', follow_last=False)
            if not linkname or target is None or not target:
                bad.append('%s => %s: hard link to a path outside' % (name, linkname))
                continue
            if '/'.join(target) in links:
                bad.append('%s => %s: hard link to a symlink' % (name, linkname))
                continue
            links.pop(key, None)
        elif kind == 'other':
            bad.append('%s: device, fifo or other special member' % name)
            continue
        else:
            links.pop(key, None)
        kinds[key] = kind
    return bad
