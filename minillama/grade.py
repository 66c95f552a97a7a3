"""`python -m minillama.grade [chapter ...]`: grade the exercises in ./exercises (see `minillama.grading.runner`).

The same command as `minillama grade`: bad input (an unknown chapter, a missing folder) gets one line, no traceback.
"""

import sys

from minillama.cli import main

if __name__ == "__main__":
    sys.exit(main(["grade", *sys.argv[1:]]))
