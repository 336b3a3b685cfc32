#!/usr/bin/python3
"""One libtorrent peer of the BitTorrent baseline, run inside a host's netns.

    ip netns exec NS /usr/bin/python3 lt_peer.py --torrent FILE --save DIR \
        --listen IP:PORT --start EPOCH [--seed] [--announce-every SECONDS]

The session (listen socket included) is set up at once; the torrent is added
when the wall clock reaches EPOCH, so that every peer of a run starts
together. With --seed the payload must already be in DIR in the torrent's
layout (see torrent.stage_payload); it is added in seed mode with every
piece marked verified, so libtorrent neither checks the files up front nor
hashes pieces lazily as they are first uploaded.

Settings: libtorrent's own high_performance_seed() preset (unlimited unchoke
slots, large send buffers and request queues, short timeouts), then TCP
only (no uTP), no DHT/LSD/UPnP/NAT-PMP, one disk I/O thread and one hashing
thread, no connection smoothing. The tracker's announce interval is long,
so until the download is complete the peer forces a re-announce every
--announce-every seconds (ignoring the tracker's min interval): leechers
learn about each other within about a second.

Stdout, one JSON object a line, flushed:
    {"event": "started", "t": EPOCH}     torrent added
    {"event": "complete", "t": EPOCH}    every piece downloaded and verified
                                         (a seeder prints it right away)
    {"event": "stats", "payload_up": N, "payload_down": N, "cpu_s": S}
                                         on SIGTERM/SIGINT, then exit 0
cpu_s is user+system time of this process. Errors reported by libtorrent
go to stderr. The process exits right after the stats line (os._exit),
without announcing "stopped" or tearing the session down, so that stopping
is quick.
"""

import argparse
import json
import os
import signal
import sys
import time

import libtorrent as lt

_stop = False


def _on_signal(_signum, _frame):
    global _stop
    _stop = True


def emit(**fields):
    """Print one JSON line on stdout and flush it."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def session_settings(listen):
    """The settings pack for a LAN swarm at its best (see module doc)."""
    s = lt.high_performance_seed()
    s.update({
        "listen_interfaces": listen,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        "enable_incoming_tcp": True,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "aio_threads": 1,
        "hashing_threads": 1,
        "unchoke_slots_limit": -1,
        "connections_limit": 200,
        "smooth_connects": False,
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "alert_mask": (lt.alert.category_t.status_notification
                       | lt.alert.category_t.error_notification),
    })
    return s


def add_params(ti, save, seed):
    """add_torrent_params: started (not paused, not auto-managed)."""
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = save
    flags = p.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    if seed:
        flags |= lt.torrent_flags.seed_mode
        p.verified_pieces = [True] * ti.num_pieces()
    p.flags = flags
    return p


def sleep_until(epoch):
    """Sleep until time.time() >= epoch or a stop signal arrived."""
    while not _stop:
        left = epoch - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--save", required=True)
    ap.add_argument("--listen", required=True, help="IP:PORT")
    ap.add_argument("--start", required=True, type=float, help="epoch")
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--announce-every", type=float, default=1.0)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    ses = lt.session(session_settings(args.listen))
    ti = lt.torrent_info(args.torrent)
    params = add_params(ti, args.save, args.seed)

    sleep_until(args.start)
    handle = None
    complete = False
    if not _stop:
        handle = ses.add_torrent(params)
        emit(event="started", t=time.time())
        next_announce = time.time() + args.announce_every
        if handle.status().is_seeding:
            emit(event="complete", t=time.time())
            complete = True

    while handle is not None and not _stop:
        if complete:
            wait_s = 0.2
        else:
            wait_s = max(0.0, min(0.2, next_announce - time.time()))
        ses.wait_for_alert(int(wait_s * 1000))
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_finished_alert) and not complete:
                emit(event="complete", t=time.time())
                complete = True
            elif a.category() & lt.alert.category_t.error_notification:
                sys.stderr.write("lt_peer: %s\n" % a.message())
        if not complete and time.time() >= next_announce:
            handle.force_reannounce(
                0, -1, lt.reannounce_flags_t.ignore_min_interval)
            next_announce = time.time() + args.announce_every

    up = down = 0
    if handle is not None:
        st = handle.status()
        up, down = st.total_payload_upload, st.total_payload_download
    t = os.times()
    emit(event="stats", payload_up=up, payload_down=down,
         cpu_s=round(t.user + t.system, 3))
    os._exit(0)


if __name__ == "__main__":
    main()
