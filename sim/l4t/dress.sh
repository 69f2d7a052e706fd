#!/usr/bin/env bash
# TEST DOUBLE / replay: dress a Debian bullseye arm64 sim robot as an L4T R35.4.1 (JetPack 5.1.2)
# robot for jetpolicy's code. Nothing here is NVIDIA software: /etc/nv_tegra_release and the dpkg
# entries are metadata, the GPU nodes have no driver, and trtexec, nvpmodel, jetson_clocks and
# tegrastats are replay doubles printing only real recorded output (recorded/README.md).
#
#   bash dress.sh DIR      (DIR: this directory inside the robot, /opt/jetpolicy-sim-l4t)
#
# Runs as root inside the robot, offline. Idempotent: a second run changes nothing. Writes the
# marker /etc/jetpolicy-sim-l4t last, so an interrupted run is redone by sim/fleet.py.
set -euo pipefail
dir="${1:?usage: dress.sh DIR}"
dir="$(cd "$dir" && pwd)"
marker=/etc/jetpolicy-sim-l4t
state=/var/lib/jetpolicy-sim-l4t

install_if_differs() { # SRC DEST MODE
  if ! cmp -s "$1" "$2"; then
    install -D -m "$3" "$1" "$2"
  else
    chmod "$3" "$2"
  fi
}

# The L4T release file (first line as JetPack 5.1.2 ships it).
install_if_differs "$dir/recorded/nv_tegra_release" /etc/nv_tegra_release 0644

# JetPack's dpkg entries: our stanzas replace any earlier copy of the same packages.
python3 - "$dir/dpkg-status.l4t" /var/lib/dpkg/status <<'PY'
import os, re, sys
ours_text = open(sys.argv[1]).read().strip()
ours = [s for s in re.split(r"\n\s*\n", ours_text) if s.strip()]
names = {re.search(r"^Package: (\S+)", s, re.M).group(1) for s in ours}
path = sys.argv[2]
text = open(path).read()
kept = [s for s in re.split(r"\n\s*\n", text.strip()) if s.strip()
        and (re.search(r"^Package: (\S+)", s, re.M) or [None, None])[1] not in names]
new = "\n\n".join(kept + ours) + "\n"
if new != text:
    tmp = path + ".jetpolicy-sim"
    with open(tmp, "w") as handle:
        handle.write(new)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
PY
for pkg in $(sed -n 's/^Package: //p' "$dir/dpkg-status.l4t"); do
  list=/var/lib/dpkg/info/$pkg.list
  want=""
  [ "$pkg" = libnvinfer-bin ] && want=$'/usr/src/tensorrt/bin/trtexec\n'
  if [ ! -e "$list" ] || [ "$(cat "$list"; echo x)" != "${want}x" ]; then
    printf '%s' "$want" >"$list"
  fi
done
install_if_differs "$dir/nvidia-l4t-apt-source.list" /etc/apt/sources.list.d/nvidia-l4t-apt-source.list 0644

# Groups the GPU nodes belong to (Debian has video; L4T's Ubuntu also has render).
getent group video >/dev/null || groupadd --system video
getent group render >/dev/null || groupadd --system render

# GPU device-node placeholders, recreated at every boot (/dev is a tmpfs).
install_if_differs "$dir/jetpolicy-sim-l4t-devices.conf" /etc/tmpfiles.d/jetpolicy-sim-l4t-devices.conf 0644
systemd-tmpfiles --create /etc/tmpfiles.d/jetpolicy-sim-l4t-devices.conf

# Replay doubles at JetPack's paths.
install -d -m 0755 "$state" /var/lib/nvpmodel
install_if_differs "$dir/bin/trtexec" /usr/src/tensorrt/bin/trtexec 0755
install_if_differs "$dir/bin/nvpmodel" /usr/sbin/nvpmodel 0755
install_if_differs "$dir/bin/jetson_clocks" /usr/bin/jetson_clocks 0755
install_if_differs "$dir/bin/tegrastats" /usr/bin/tegrastats 0755

doubles='["/usr/src/tensorrt/bin/trtexec", "/usr/sbin/nvpmodel", "/usr/bin/jetson_clocks", "/usr/bin/tegrastats"]'
want="{\"simulated\": \"replay\", \"profile\": \"L4T R35.4.1 / JetPack 5.1.2\", \"doubles\": $doubles, \"sources\": \"$dir/recorded/README.md\"}"
if [ "$(cat "$marker" 2>/dev/null || true)" != "$want" ]; then
  printf '%s\n' "$want" >"$marker.tmp" && mv "$marker.tmp" "$marker"
fi
echo "jetpolicy sim: dressed as L4T R35.4.1 (replay doubles; sources: $dir/recorded/README.md)"
