"""torchrun, reporting a failed worker or rendezvous in one line instead of a traceback.

A worker that stops on a mistake (a config value, a data file) has already printed what
to do; torchrun's own report would bury that under its traceback and failure table.
launch/torchrun.sh runs this with torchrun's arguments.
"""

import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import RendezvousError, RendezvousTimeoutError
from torch.distributed.run import parse_args, run


def main() -> int:
    args = parse_args(sys.argv[1:])
    try:
        run(args)
    except RendezvousTimeoutError:
        return no_rendezvous(args.rdzv_endpoint, f"{args.nnodes} nodes did not all join in time")
    except RendezvousError as err:
        return no_rendezvous(args.rdzv_endpoint, str(err.__cause__ or err).strip().split("\n")[0])
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode < 0:
            what = f"was killed by {failure.signal_name()}"
        else:
            what = f"exited with status {failure.exitcode}: its message is above"
        print(f"torchrun: rank {rank} {what}", file=sys.stderr)
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


def no_rendezvous(endpoint: str, reason: str) -> int:
    print(
        f"torchrun: no rendezvous at {endpoint}: {reason}\n"
        "Every node needs the same NNODES, MASTER_ADDR (an address the others reach) and\n"
        "MASTER_PORT (one that no other run on that node uses).",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
