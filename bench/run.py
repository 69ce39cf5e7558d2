"""`make bench`: run every bench/bench_*.py and print one table of ratios.

Each bench module defines ``run(report)`` and calls ``report(bench, ours_s, plain_s, note)`` for each
comparison it makes, timing our tool and the plain tool in the same run (``ours_s`` None: a row that only notes
something, e.g. counts).  Ratios are printed, never
asserted.  ``make bench BENCH_ARGS="dicom_echo"`` runs only the modules whose names contain the word.
"""
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests', 'integration'))


def _fmt(value, spec):
    """A number formatted with ``spec``, or '-' when there is none."""
    return '-' if value is None else format(value, spec)


def main(argv):
    rows = []

    def report(name, ours_s, plain_s=None, note=''):
        ratio = (ours_s / plain_s) if (plain_s and ours_s is not None) else None
        rows.append((name, ours_s, plain_s, ratio, note))
        print('bench: %-48s ours %10s  plain %10s  ratio %6s  %s' % (
            name, _fmt(ours_s, '.3f'), _fmt(plain_s, '.3f'), _fmt(ratio, '.2f'), note), flush=True)

    names = sorted(f for f in os.listdir(HERE) if f.startswith('bench_') and f.endswith('.py'))
    if argv:
        names = [n for n in names if any(word in n for word in argv)]
    failures = 0
    for filename in names:
        spec = importlib.util.spec_from_file_location(filename[:-3], os.path.join(HERE, filename))
        module = importlib.util.module_from_spec(spec)
        started = time.monotonic()
        try:
            spec.loader.exec_module(module)
            module.run(report)
        except Exception:  # pylint: disable=broad-except
            failures += 1
            traceback.print_exc()
            rows.append((filename + ' FAILED', time.monotonic() - started, None, None, 'see traceback above'))

    print()
    print('| benchmark | ours (s) | plain tool (s) | ratio ours/plain | note |')
    print('|---|---:|---:|---:|---|')
    for name, ours, plain, ratio, note in rows:
        print('| %s | %s | %s | %s | %s |' % (name, _fmt(ours, '.3f'), _fmt(plain, '.3f'), _fmt(ratio, '.2f'), note))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
