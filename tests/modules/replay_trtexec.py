#!/usr/bin/env python3
"""TEST DOUBLE of NVIDIA's trtexec: replays a recorded log. Never shipped to robots.

Environment:
  REPLAY_LOG      recorded trtexec output to print (a file from ../shared/fixtures/trtexec/)
  REPLAY_RC       exit status (default: 0 when the log has '&&&& PASSED', else 1)
  REPLAY_ENGINE   'write' (default) writes --saveEngine, 'skip' writes nothing, 'fail-save' acts out a
                  failed save (below)
  REPLAY_SLEEP    seconds to sleep after writing the engine, before printing (a build or timed
                  inference that runs past a timeout)
  REPLAY_ALLOC_MB MiB to allocate before writing the engine (a builder's host memory); when that fails
                  (a memory cap) it aborts, as a C++ program does on an uncaught std::bad_alloc
  REPLAY_COUNTER  file that counts invocations (one line per run)
  REPLAY_ARGS     file that receives the argv as JSON

'fail-save' prints the recorded log up to where the engine would be saved (before the first line of
the engine's load/inference phase), leaves a partial --saveEngine file as std::ofstream does, then
prints the lines trtexec prints when that write fails, in the log's own prefix style:
  "Saving engine to file failed."  getEngineBuildEnv(), samples/common/sampleEngines.cpp
                                   (NVIDIA/TensorRT 8.5.2 line 1220, v8.6.1 line 1411, v10.3.0 line 1493)
  "Engine set up failed"           samples/trtexec/trtexec.cpp (8.5.2 line 217, v10.3.0 line 331)
  "&&&& FAILED TensorRT.trtexec [TensorRT vNNNN] # argv"   reportFail(), as in the recorded logs
and exits 1.
"""

import json
import os
import re
import sys
import time

# First lines of the phase after the engine is saved, in the recorded logs.
_AFTER_SAVE = re.compile(r"Engine loaded in|Engine deserialized in|Starting inference|=== Performance summary|"
                         r"=== Profile|Average on \d+ runs|&&&& (PASSED|FAILED)")
_STAMP = re.compile(r"^(\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\] )")
_TAG = re.compile(r"^&&&& RUNNING TensorRT\.trtexec (\[TensorRT v\d+\])")


def save_target(args: list) -> str:
    for arg in args:
        if arg.startswith("--saveEngine="):
            return arg.split("=", 1)[1]
    return ""


def fail_save(text: str, args: list) -> int:
    lines = []
    stamp = ""
    tag = ""
    for line in text.splitlines():
        if _AFTER_SAVE.search(line):
            break
        lines.append(line)
        match = _STAMP.match(line)
        stamp = match.group(1) if match else stamp
        match = _TAG.match(line)
        tag = match.group(1) + " " if match else tag
    target = save_target(args)
    if target:
        with open(target, "wb") as handle:
            handle.write(b"partial-engine")
    lines += [f"{stamp}[E] Saving engine to file failed.", f"{stamp}[E] Engine set up failed",
              "&&&& FAILED TensorRT.trtexec {}# {}".format(tag, " ".join([sys.argv[0], *args]))]
    sys.stdout.write("\n".join(lines) + "\n")
    return 1


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
    if os.environ.get("REPLAY_ALLOC_MB"):
        try:
            held = bytearray(int(os.environ["REPLAY_ALLOC_MB"]) * 1024 * 1024)
        except MemoryError:
            os.abort()
        del held
    mode = os.environ.get("REPLAY_ENGINE", "write")
    if mode == "fail-save":
        return fail_save(text, args)
    passed = "&&&& PASSED" in text
    target = save_target(args)
    if passed and mode == "write" and target:
        with open(target, "wb") as handle:
            handle.write(b"replayed-engine:" + os.path.basename(log_path).encode())
    if os.environ.get("REPLAY_SLEEP"):
        time.sleep(float(os.environ["REPLAY_SLEEP"]))
    sys.stdout.write(text)
    return int(os.environ.get("REPLAY_RC", "0" if passed else "1"))


if __name__ == "__main__":
    sys.exit(main())
