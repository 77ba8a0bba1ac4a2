#!/usr/bin/python3
"""An HTTP/2 client for the tests (Debian's python3-h2, prior knowledge,
cleartext), that can reset a stream at a chosen moment.

    h2client.py PORT SPEC [TIMEOUT_S]

SPEC is JSON: a list of streams, each {"path": "/x", "headers": {...},
"start_ms": 0, "rst_ms": null}, all on one connection: stream i is sent
start_ms after the connection is up and, if rst_ms is set, reset (CANCEL)
rst_ms after it was sent.  Prints JSON: a list of {"status", "headers",
"body", "reset"} in SPEC order ("status" null for a reset stream).  Bounded:
gives up after TIMEOUT_S seconds (default 10) and prints what it has.
"""

import json
import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events


def main():
    port = int(sys.argv[1])
    spec = json.loads(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True,
                                         header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    t0 = time.monotonic()
    results = [{"status": None, "headers": {}, "body": "", "reset": False}
               for _ in spec]
    stream_of = {}        # stream id -> index in spec
    sent_at = {}          # index -> time sent
    pending = set(range(len(spec)))

    while pending and time.monotonic() - t0 < timeout:
        now = time.monotonic()

        for i, s in enumerate(spec):
            if i not in sent_at and now - t0 >= s.get("start_ms", 0) / 1000:
                sid = conn.get_next_available_stream_id()
                headers = [(":method", "GET"), (":scheme", "http"),
                           (":authority", "127.0.0.1:%d" % port),
                           (":path", s["path"])]
                headers += list(s.get("headers", {}).items())
                conn.send_headers(sid, headers, end_stream=True)
                stream_of[sid] = i
                sent_at[i] = now

            rst = s.get("rst_ms")
            if (i in sent_at and i in pending and rst is not None
                    and now - sent_at[i] >= rst / 1000):
                sid = [k for k, v in stream_of.items() if v == i][0]
                conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                results[i]["reset"] = True
                pending.discard(i)

        out = conn.data_to_send()
        if out:
            sock.sendall(out)

        readable, _, _ = select.select([sock], [], [], 0.01)
        if not readable:
            continue

        data = sock.recv(65536)
        if not data:
            break

        for ev in conn.receive_data(data):
            i = stream_of.get(getattr(ev, "stream_id", None))
            if i is None:
                continue
            if isinstance(ev, h2.events.ResponseReceived):
                for k, v in ev.headers:
                    if k == ":status":
                        results[i]["status"] = int(v)
                    else:
                        results[i]["headers"][k] = v
            elif isinstance(ev, h2.events.DataReceived):
                results[i]["body"] += ev.data.decode("utf-8", "replace")
                conn.acknowledge_received_data(ev.flow_controlled_length,
                                               ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded,
                                 h2.events.StreamReset)):
                pending.discard(i)

        out = conn.data_to_send()
        if out:
            sock.sendall(out)

    try:
        conn.close_connection()
        sock.sendall(conn.data_to_send())
    except OSError:
        pass
    sock.close()

    print(json.dumps(results))


if __name__ == "__main__":
    main()
