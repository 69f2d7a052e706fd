#!/usr/bin/env python3
"""TEST DOUBLE of NVIDIA's trtexec: replays a recorded log. Never shipped to robots.

Environment:
  REPLAY_LOG      recorded trtexec output to print (a file from ../shared/fixtures/trtexec/)
  REPLAY_RC       exit status (default: 0 when the log has '&&&& PASSED', else 1)
  REPLAY_ENGINE   'write' (default) writes --saveEngine, 'skip' writes nothing
  REPLAY_COUNTER  file that counts invocations (one line per run)
  REPLAY_ARGS     file that receives the argv as JSON
"""

import json
import os
import sys


def main() -> int:
    log_path = os.environ["REPLAY_LOG"]
    with open(log_path) as handle:
        text = handle.read()
    args = sys.argv[1:]
    if os.environ.get("REPLAY_COUNTER"):
        with open(os.environ["REPLAY_COUNTER"], "a") as handle:
            handle.write("run\n")
    if os.environ.get("REPLAY_ARGS"):
        with open(os.environ["REPLAY_ARGS"], "w") as handle:
            json.dump(args, handle)
    passed = "&&&& PASSED" in text
    if passed and os.environ.get("REPLAY_ENGINE", "write") == "write":
        for arg in args:
            if arg.startswith("--saveEngine="):
                with open(arg.split("=", 1)[1], "wb") as handle:
                    handle.write(b"replayed-engine:" + os.path.basename(log_path).encode())
    sys.stdout.write(text)
    return int(os.environ.get("REPLAY_RC", "0" if passed else "1"))


if __name__ == "__main__":
    sys.exit(main())
