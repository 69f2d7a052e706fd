#!/usr/bin/env bash
# Let this x86_64 host run arm64 binaries (the Jetson-shaped sim robots) through qemu-user.
# binfmt-support registers qemu-aarch64 with the F (fix-binary) flag: the interpreter is opened at
# registration, so it also works inside containers that do not have it. The robots also need C
# (credentials from the binary, not the interpreter; implies O): without it a setuid binary such as
# sudo runs without its privileges under qemu ("sudo: effective uid is not 0") and Ansible's become
# fails on every arm64 robot. Debian registers without C, so it is added here. Idempotent.
set -euo pipefail
sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"
misc=/proc/sys/fs/binfmt_misc
if [ ! -e "$misc/register" ]; then
  $sudo_cmd mount -t binfmt_misc binfmt_misc "$misc"
fi
if [ ! -e "$misc/qemu-aarch64" ]; then
  $sudo_cmd update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if ! grep -q '^enabled' "$misc/qemu-aarch64" 2>/dev/null; then
  echo "setup: qemu-aarch64 is not registered with binfmt_misc: arm64 sim robots cannot start." >&2
  echo "fix: apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64" >&2
  exit 1
fi
if ! grep -q 'flags:.*F' "$misc/qemu-aarch64"; then
  echo "setup: qemu-aarch64 is registered without the F flag: it will not run inside containers." >&2
  echo "fix: update-binfmts --disable qemu-aarch64 && update-binfmts --enable qemu-aarch64 (Debian's qemu-user-static registers it with F)" >&2
  exit 1
fi
entry="$misc/qemu-aarch64"
if ! grep -q '^flags:.*C' "$entry"; then
  interpreter="$(sed -n 's/^interpreter //p' "$entry")"
  flags="$(sed -n 's/^flags: //p' "$entry")"
  offset="$(sed -n 's/^offset //p' "$entry")"
  # The kernel reads \xHH escapes in a registration string: write magic and mask back that way.
  magic="$(sed -n 's/^magic //p' "$entry" | sed 's/../\\x&/g')"
  mask="$(sed -n 's/^mask //p' "$entry" | sed 's/../\\x&/g')"
  case "$flags" in *O*) ;; *) flags="${flags}O" ;; esac
  flags="${flags}C"
  echo -1 | $sudo_cmd tee "$entry" >/dev/null
  printf ':qemu-aarch64:M:%s:%s:%s:%s:%s' "$offset" "$magic" "$mask" "$interpreter" "$flags" \
    | $sudo_cmd tee "$misc/register" >/dev/null
  grep -q '^flags:.*C' "$entry" || { echo "setup: could not add the C flag to qemu-aarch64" >&2; exit 1; }
  echo "setup: qemu-aarch64 re-registered with flags $flags (setuid binaries such as sudo work on arm64 robots)"
fi
