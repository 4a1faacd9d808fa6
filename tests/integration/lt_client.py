"""A libtorrent-based client for tracker tests: seed or leech one torrent using only the tracker
(DHT, LSD, UPnP, NAT-PMP and uTP off, so nothing leaves loopback).
Usage: lt_client.py seed|leech TORRENT DIR LISTEN_IP:PORT"""
import sys
import time

import libtorrent as lt

mode, torrent, save, listen = sys.argv[1:5]
s = lt.session({"listen_interfaces": listen.replace(":0", ":%d" % (17000 if mode == "seed" else 17100)),
                "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
                "enable_outgoing_utp": False, "enable_incoming_utp": False,
                "allow_multiple_connections_per_ip": True, "announce_to_all_trackers": True,
                "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.tracker_notification})
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
deadline = time.time() + (120 if mode == "seed" else 80)
while time.time() < deadline:
    for a in s.pop_alerts():
        print(a.message(), flush=True)
    st = h.status()
    if mode == "leech" and st.is_seeding:
        print("complete", flush=True)
        sys.exit(0)
    time.sleep(0.2)
sys.exit(0 if mode == "seed" else 1)
