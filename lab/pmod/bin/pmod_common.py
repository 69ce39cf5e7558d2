"""What the stand-in PMOD programs share: reading the site's .properties, reading a command line option."""
import os
import sys


def read_properties(path):
    """Java-style .properties (ISO-8859-1, \\uXXXX escapes, # and ! comments)."""
    values = {}
    with open(path, encoding='iso-8859-1') as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line[0] in '#!':
                continue
            for sep in ('=', ':'):
                if sep in line:
                    key, value = line.split(sep, 1)
                    break
            else:
                key, value = line, ''
            values[key.strip()] = value.strip().encode('latin-1', 'backslashreplace').decode('unicode_escape')
    return values


def arg(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def release_version():
    """The installed release's version: the VERSION file next to bin/."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'VERSION'), encoding='ascii') as handle:
        return handle.read().strip()
