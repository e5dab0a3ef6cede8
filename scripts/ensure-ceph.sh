#!/usr/bin/env bash
# Make sure Ceph's monitor, OSD and S3 gateway binaries are installed (Debian 12 packages
# radosgw ceph-mon ceph-osd): the tests' S3 server (scripts/ceph-rgw.sh). Idempotent.
#
# As root with apt-get (CI): install them when missing (at most ~35 s, <= 70 MB download;
# no recommends: ceph-mgr, ceph-mds, fuse, lvm2 are not needed).
# Otherwise: say so and succeed; the tests then fall back to moto_server and print why.
set -euo pipefail

missing=()
for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph; do
  command -v "$bin" >/dev/null || missing+=("$bin")
done
if [ ${#missing[@]} = 0 ]; then
  echo "ceph: installed ($(ceph --version 2>/dev/null | awk '{print $3}'))"; exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "ceph: installing radosgw ceph-mon ceph-osd (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 radosgw ceph-mon ceph-osd >/tmp/ensure-ceph-apt.log 2>&1 || {
    # A clean machine may have no package lists yet.
    apt-get update -q >>/tmp/ensure-ceph-apt.log 2>&1
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 radosgw ceph-mon ceph-osd >>/tmp/ensure-ceph-apt.log 2>&1 || {
      tail -n 20 /tmp/ensure-ceph-apt.log >&2
      echo "ceph: apt-get install radosgw ceph-mon ceph-osd failed (log: /tmp/ensure-ceph-apt.log)" >&2
      exit 1
    }
  }
  echo "ceph: installed ($(ceph --version 2>/dev/null | awk '{print $3}'))"; exit 0
fi

echo "ceph: not installed (missing: ${missing[*]}) and cannot install here (needs root and apt-get);" \
  "S3 tests will run against moto_server instead of Ceph RGW" >&2
exit 0
