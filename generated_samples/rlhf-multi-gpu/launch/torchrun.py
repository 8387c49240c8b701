"""torchrun, reporting a failed worker in one line instead of a traceback.

A worker that stops on a mistake (a config value, a data file) has already printed what
to do; torchrun's own report would bury that under its traceback and failure table.
launch/torchrun.sh runs this with torchrun's arguments.
"""

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main() -> int:
    try:
        run(parse_args(sys.argv[1:]))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode < 0:
            what = f"was killed by {failure.signal_name()}"
        else:
            what = f"exited with status {failure.exitcode}: its message is above"
        print(f"torchrun: rank {rank} {what}", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
