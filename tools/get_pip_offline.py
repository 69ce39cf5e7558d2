"""Offline stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test runs ``python get_pip_<version>.py <pip options> pip==<version>`` inside a fresh
virtual environment.  The real script carries pip inside itself; this one takes pip from the wheel
that CPython's ``ensurepip`` bundles, then lets that pip install the requested packages from the
package index.  tools/setup.sh copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""
import glob
import os
import sys

import ensurepip

# get-pip.py understands these two flags itself; pip does not.
OWN_FLAGS = {'--no-setuptools', '--no-wheel'}


def main():
    bundled = os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')
    wheels = sorted(glob.glob(os.path.join(bundled, 'pip-*.whl')))
    if not wheels:
        sys.exit('get_pip_offline: no pip wheel bundled with ensurepip in %s' % bundled)
    sys.path.insert(0, wheels[-1])
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    args = [arg for arg in sys.argv[1:] if arg not in OWN_FLAGS]
    return pip_main(['install', '--no-cache-dir'] + args)


if __name__ == '__main__':
    sys.exit(main())
