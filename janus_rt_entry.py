"""The `janus-rt` console command's entry: it starts before `janus_rt` (and torch) import, so Ctrl-C during those
first seconds is the same one line and exit 130 as at any later point (`janus_rt.cli.main` handles the rest).

It lives outside the `janus_rt` package on purpose: importing anything inside the package imports the package,
which imports torch, before any code of ours could catch the interrupt.
"""

import sys


def main() -> int:
    try:
        from janus_rt.cli.main import main as run_command
    except KeyboardInterrupt:
        print("janus-rt: interrupted", file=sys.stderr)
        return 130
    return run_command()


if __name__ == "__main__":
    sys.exit(main())
