"""A libtorrent peer that claims every piece of a torrent and serves corrupt data: it seeds a copy
with one byte flipped in every piece, marked as complete without a check.
Usage (Debian's /usr/bin/python3, which has python3-libtorrent):
  bad_seeder.py TORRENT GOOD_FILE WORKDIR LISTEN_IP:PORT ANNOUNCE_URL"""
import os
import shutil
import sys
import time

import libtorrent as lt

torrent, good, work, listen, announce = sys.argv[1:6]
ti = lt.torrent_info(torrent)
bad = os.path.join(work, ti.name())
shutil.copyfile(good, bad)
with open(bad, "r+b") as f:
    for p in range(ti.num_pieces()):
        f.seek(p * ti.piece_length() + 7)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x5A]))
s = lt.session({"listen_interfaces": listen, "outgoing_interfaces": listen.rsplit(":", 1)[0],
                "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                "enable_outgoing_utp": False, "enable_incoming_utp": False,
                "allow_multiple_connections_per_ip": True,
                "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.peer_notification})
atp = lt.add_torrent_params()
atp.ti = ti
atp.save_path = work
atp.trackers = [announce]
atp.have_pieces = [True] * ti.num_pieces()  # claimed, never checked
atp.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
h = s.add_torrent(atp)
print("bad seeder up", flush=True)
deadline = time.time() + 240
while time.time() < deadline:
    for a in s.pop_alerts():
        print(a.message(), flush=True)
    time.sleep(0.2)
