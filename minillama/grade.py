"""`python -m minillama.grade [chapter ...]`: grade the exercises in ./exercises (see `minillama.grading.runner`)."""

import sys

from minillama.grading.runner import main

if __name__ == "__main__":
    sys.exit(main())
