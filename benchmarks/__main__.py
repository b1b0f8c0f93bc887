"""`python -m vitsrt.benchmarks ...` is `vitsrt bench ...`."""

import sys

from vitsrt.benchmarks.cli import main

sys.exit(main())
