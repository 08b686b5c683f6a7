"""The rank of tests/e2e/test_gpus.py: records which GPUs it was given, and when it held them.

Each rank marks its start in $GPU_CLAIM_RECORDS/<run id>.<local rank>.started, then writes
<run id>.<local rank>.json: its launch's run id (a fresh one per launch), its LOCAL_RANK, the
CUDA_VISIBLE_DEVICES it got, and the wall-clock times around a sleep of GPU_CLAIM_SLEEP seconds
(default 2), during which its launcher holds the claim. No torch: what is tested is the launcher's
claim, not CUDA.
"""

import json
import os
import time


def main() -> None:
    started = time.time()
    directory = os.environ["GPU_CLAIM_RECORDS"]
    run, rank = os.environ["TORCHELASTIC_RUN_ID"], os.environ["LOCAL_RANK"]
    open(os.path.join(directory, f"{run}.{rank}.started"), "w").close()
    time.sleep(float(os.environ.get("GPU_CLAIM_SLEEP", "2")))
    record = {
        "run": run,
        "local_rank": int(rank),
        "local_world_size": int(os.environ["LOCAL_WORLD_SIZE"]),
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "start": started,
        "end": time.time(),
    }
    name = f"{run}.{rank}.json"
    with open(os.path.join(directory, name + ".tmp"), "w", encoding="utf-8") as out:
        json.dump(record, out)
    os.replace(os.path.join(directory, name + ".tmp"), os.path.join(directory, name))


if __name__ == "__main__":
    main()
