"""`python -m minillama.pretrain ...`: the same command as `minillama pretrain ...`, in the form `torchrun` starts:

    torchrun --nproc_per_node=8 -m minillama.pretrain --dist fsdp --preset base --out runs/base

Bad input (a world size that does not divide the batch, data without text, a missing device) gets one line and
exit code 2, no traceback; under torchrun rank 0 says it and the other processes exit quietly.
"""

import sys

from minillama.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
