#!/usr/bin/env bash
# A throwaway Ceph cluster serving S3 on loopback: one monitor, one OSD (memstore: objects
# in RAM) and radosgw with the beast frontend. Real S3 signature checks and real multipart
# semantics, for the tests (ferry_common.pytest_plugin) and the ingest benchmark.
#
#   scripts/ceph-rgw.sh up DIR       start a new cluster in DIR (wiped first); prints RGW_ENDPOINT=host:port
#   scripts/ceph-rgw.sh down DIR     stop it (daemons by their pid files) and remove DIR
#   scripts/ceph-rgw.sh gc DIR       run RGW's garbage collector now (frees deleted objects' RAM)
#   scripts/ceph-rgw.sh watch DIR    stop the cluster once no pid listed in DIR/owners is alive
#
# Environment (up):
#   RGW_PORT / MON_PORT            ports on 127.0.0.1 (default 47080 / 47789)
#   RGW_ACCESS_KEY / RGW_SECRET_KEY  the S3 user's keys (default ferry / ferry-secret)
#   RGW_MEMSTORE_BYTES             the OSD's RAM budget (default 6 GiB; writes hang when it is full)
# The packages: scripts/ensure-ceph.sh. Up in about 17 s on a 2-core machine.
set -euo pipefail

cmd=${1:?usage: ceph-rgw.sh up|down|gc|watch DIR}
D=${2:?usage: ceph-rgw.sh up|down|gc|watch DIR}
C=(-c "$D/ceph.conf")

stop_daemons() {
  local n f
  for n in watch client.rgw osd.0 mon.a; do
    f=$D/run/$n.pid
    [ -f "$f" ] && [ "$(cat "$f")" != "$$" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  # Wait for the daemons to go (memstore's RAM is returned when the OSD exits).
  for _ in $(seq 50); do
    local alive=0
    for n in client.rgw osd.0 mon.a; do
      f=$D/run/$n.pid
      [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for n in client.rgw osd.0 mon.a; do
    f=$D/run/$n.pid
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
}

down() {
  stop_daemons
  rm -rf "$D"
}

case $cmd in
up) ;;
down) down; exit 0 ;;
gc) exec radosgw-admin "${C[@]}" gc process --include-all ;;
watch)
  echo $$ >"$D/run/watch.pid"
  while [ -d "$D" ]; do
    alive=0
    while read -r pid; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done <"$D/owners"
    if [ $alive = 0 ]; then down; exit 0; fi
    sleep 2
  done
  exit 0 ;;
*) echo "ceph-rgw.sh: unknown command $cmd (up, down, gc, watch)" >&2; exit 2 ;;
esac

for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
  command -v $bin >/dev/null || { echo "ceph-rgw.sh: $bin not found; run scripts/ensure-ceph.sh" >&2; exit 1; }
done
MON_PORT=${MON_PORT:-47789}
RGW_PORT=${RGW_PORT:-47080}
ACCESS=${RGW_ACCESS_KEY:-ferry}
SECRET=${RGW_SECRET_KEY:-ferry-secret}
rm -rf "$D"
mkdir -p "$D"/{mon,osd,run,log}
touch "$D/owners"
FSID=$(cat /proc/sys/kernel/random/uuid)
cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon_initial_members = a
mon_host = [v2:127.0.0.1:$MON_PORT]
auth_allow_insecure_global_id_reclaim = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 5
public_addr = 127.0.0.1
run_dir = $D/run
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
pid_file = $D/run/\$name.pid
mon_data = $D/mon/\$name
osd_data = $D/osd/\$name
osd_objectstore = memstore
memstore_device_bytes = ${RGW_MEMSTORE_BYTES:-6442450944}
keyring = $D/keyring
[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_dns_name = 127.0.0.1
rgw_thread_pool_size = 64
# Deleted objects' data (multipart parts, tails over 4 MiB) is freed by the garbage
# collector, deferred by 2 h by default: with memstore that RAM would stay taken.
rgw_gc_obj_min_wait = 5
rgw_gc_processor_period = 10
rgw_gc_processor_max_time = 10
CONF
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.rgw --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon "${C[@]}" -i a

fail() {
  echo "ceph-rgw.sh: $1 (logs in $D/log)" >&2
  tail -n 20 "$D/log/"*.log >&2 2>/dev/null || true
  stop_daemons
  exit 1
}
ok=0
for _ in $(seq 100); do ceph "${C[@]}" --connect-timeout 2 -s >/dev/null 2>&1 && { ok=1; break; }; sleep 0.3; done
[ $ok = 1 ] || fail "the monitor did not come up on 127.0.0.1:$MON_PORT"
ceph "${C[@]}" osd set-require-min-compat-client luminous >/dev/null 2>&1 || true
OSD=$(ceph "${C[@]}" osd create)
mkdir -p "$D/osd/osd.$OSD"
ceph-osd "${C[@]}" -i "$OSD" --mkfs >"$D/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed"
ceph "${C[@]}" osd crush add-bucket localhost host >>"$D/log/setup.out" 2>&1
ceph "${C[@]}" osd crush move localhost root=default >>"$D/log/setup.out" 2>&1
ceph "${C[@]}" osd crush add "osd.$OSD" 1.0 host=localhost >>"$D/log/setup.out" 2>&1
ceph-osd "${C[@]}" -i "$OSD" >>"$D/log/setup.out" 2>&1
ok=0
for _ in $(seq 200); do ceph "${C[@]}" osd stat 2>/dev/null | grep -q '1 up' && { ok=1; break; }; sleep 0.3; done
[ $ok = 1 ] || fail "the OSD did not come up"
radosgw "${C[@]}" -n client.rgw >>"$D/log/setup.out" 2>&1
ok=0
for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && { ok=1; break; }; sleep 0.3; done
[ $ok = 1 ] || fail "radosgw did not answer on 127.0.0.1:$RGW_PORT"
radosgw-admin "${C[@]}" user create --uid=ferry --display-name=ferry \
  --access-key="$ACCESS" --secret-key="$SECRET" >/dev/null || fail "radosgw-admin user create failed"
echo "RGW_ENDPOINT=127.0.0.1:$RGW_PORT"
