#!/usr/bin/env bash
# Builds the Debian package from the release binary: `make deb` →
# target/debian/encore_VERSION_ARCH.deb. Only Debian's own tools (dpkg-deb, dpkg -S, objdump):
#   /usr/bin/encore                    the daemon and CLI
#   /lib/systemd/system/encore.service Type=notify, DynamicUser, state in /var/lib/encore
#   /etc/encore/encore.toml            a conffile: the origin, the API on loopback, a demo channel
#   /usr/share/encore/hw-profiles/     the hardware profiles (also built into the binary)
# Depends: the Debian packages of the shared libraries the binary links (FFmpeg's among them).
set -euo pipefail
cd "$(dirname "$0")/.."

# BINARY and OUT_DIR: another build of the binary, another output folder (the tests').
binary=${BINARY:-target/release/encore}
out_dir=${OUT_DIR:-target/debian}
[ -x "$binary" ] || { echo "build-deb: $binary missing: cargo build --release first" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=$out_dir/root
out=$out_dir/encore_${version}_${arch}.deb
rm -rf "$root"
install -D -m 0755 "$binary" "$root/usr/bin/encore"
strip --strip-unneeded "$root/usr/bin/encore" 2>/dev/null || true
install -D -m 0644 packaging/encore.service "$root/lib/systemd/system/encore.service"
install -D -m 0644 packaging/encore.toml "$root/etc/encore/encore.toml"
install -d "$root/usr/share/encore/hw-profiles"
install -m 0644 hw-profiles/* "$root/usr/share/encore/hw-profiles/"
install -D -m 0644 README.md "$root/usr/share/doc/encore/README.md"

# The package of every library the binary needs (libc6 included).
depends=$(objdump -p "$binary" | awk '/NEEDED/ {print $2}' | while read -r lib; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
  [ -n "$path" ] || { echo "build-deb: $lib not found" >&2; exit 1; }
  dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1 ||
    dpkg -S "$path" | head -1 | cut -d: -f1
done | sort -u | paste -sd, | sed 's/,/, /g')

install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: encore
Version: $version
Architecture: $arch
Maintainer: Encore maintainers <encore@localhost>
Section: video
Priority: optional
Depends: $depends
Installed-Size: $(du -sk "$root" | cut -f1)
Description: GPU transcoding appliance: live channels, VOD jobs, an HTTP origin
 Encore decodes a source once, scales it into an ABR ladder, encodes every rung on
 NVENC, VA-API or x264/x265, packages CMAF segments with HLS and DASH manifests and
 serves them from its own origin. Jobs and channels arrive over a REST API.
CONTROL
echo /etc/encore/encore.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  systemctl enable encore.service || true
  systemctl start encore.service || true
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop encore.service || true
  systemctl disable encore.service || true
fi
PRERM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
