"""Run the `n3net` command line as `python -m n3net`."""

import sys

from n3net.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
