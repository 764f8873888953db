"""Queue messages and blobs written and read with the real Azure Storage SDKs.

Usage (the connection string comes from AZURE_STORAGE_CONNECTION_STRING):
  storage_client.py send QUEUE TEXT [COUNT]   base64-encoded, as Azure Functions expects;
                                              "{i}" in TEXT becomes 0..COUNT-1
  storage_client.py send-raw QUEUE TEXT       the text as it is (no encoding)
  storage_client.py receive QUEUE             every message now visible, raw and decoded,
                                              as JSON lines {"id", "raw", "dequeue_count"}
  storage_client.py upload CONTAINER NAME TEXT [CONTENT_TYPE]
  storage_client.py upload-many CONTAINER NAME TEXT COUNT   "{i}" in NAME and TEXT becomes 0..COUNT-1
                                              (8 uploads at a time)
  storage_client.py download CONTAINER NAME   the blob's text (exit 3 if missing)
  storage_client.py list CONTAINER [PREFIX]   one name per line
  storage_client.py metadata CONTAINER [PREFIX]   JSON lines {"name", "metadata"}
  storage_client.py duplicate SEED PERCENT MAX_DELAY_S QUEUE...
                                              peek the queues every 50 ms and send a copy of
                                              PERCENT % of the messages seen (byte for byte),
                                              visible after 0..MAX_DELAY_S s: a redelivery.
                                              One JSON line per copy. On "stop" on stdin: stop
                                              copying, wait until every copy was taken, print
                                              "drained" and exit
"""

import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
import threading
import time

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

CONN = os.environ["AZURE_STORAGE_CONNECTION_STRING"]


def queue(name, encode):
    policy = TextBase64EncodePolicy() if encode else None
    q = QueueClient.from_connection_string(CONN, name, message_encode_policy=policy)
    try:
        q.create_queue()
    except ResourceExistsError:
        pass
    return q


def main(args):
    cmd = args[0]
    if cmd in ("send", "send-raw"):
        q = queue(args[1], cmd == "send")
        count = int(args[3]) if len(args) > 3 else 1
        for i in range(count):
            q.send_message(args[2].replace("{i}", str(i)))
    elif cmd == "receive":
        q = QueueClient.from_connection_string(CONN, args[1])
        try:
            while True:
                batch = list(q.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=300))
                if not batch:
                    break
                for m in batch:
                    print(json.dumps({"id": m.id, "raw": m.content, "dequeue_count": m.dequeue_count}))
        except ResourceNotFoundError:
            pass
    elif cmd == "upload":
        service = BlobServiceClient.from_connection_string(CONN)
        container = service.get_container_client(args[1])
        try:
            container.create_container()
        except ResourceExistsError:
            pass
        settings = ContentSettings(content_type=args[4]) if len(args) > 4 else None
        container.upload_blob(args[2], args[3].encode(), overwrite=True, content_settings=settings)
    elif cmd == "upload-many":
        service = BlobServiceClient.from_connection_string(CONN)
        container = service.get_container_client(args[1])
        try:
            container.create_container()
        except ResourceExistsError:
            pass

        def put(i):
            name = args[2].replace("{i}", str(i))
            container.upload_blob(name, args[3].replace("{i}", str(i)).encode(), overwrite=True)

        # 8 uploads at a time: thousands of blobs in seconds.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, range(int(args[4]))))
    elif cmd == "download":
        service = BlobServiceClient.from_connection_string(CONN)
        try:
            data = service.get_blob_client(args[1], args[2]).download_blob().readall()
        except ResourceNotFoundError:
            sys.exit(3)
        sys.stdout.write(data.decode())
    elif cmd == "list":
        service = BlobServiceClient.from_connection_string(CONN)
        prefix = args[2] if len(args) > 2 else None
        try:
            for b in service.get_container_client(args[1]).list_blobs(name_starts_with=prefix):
                print(b.name)
        except ResourceNotFoundError:
            pass
    elif cmd == "metadata":
        service = BlobServiceClient.from_connection_string(CONN)
        prefix = args[2] if len(args) > 2 else None
        try:
            blobs = service.get_container_client(args[1]).list_blobs(
                name_starts_with=prefix, include=["metadata"]
            )
            for b in blobs:
                print(json.dumps({"name": b.name, "metadata": b.metadata or {}}))
        except ResourceNotFoundError:
            pass
    elif cmd == "duplicate":
        duplicate(int(args[1]), int(args[2]), int(args[3]), args[4:])
    else:
        sys.exit(f"unknown command {cmd!r}")


def duplicate(seed, percent, max_delay_s, names):
    """Redeliveries, as after a host that died between its checkpoint and
    the delete: a message taken again once the original was processed."""
    rng = random.Random(seed)
    queues = {n: QueueClient.from_connection_string(CONN, n) for n in names}
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    seen = set()
    copies = {}  # copy id -> (queue, visible at)
    while not stop.is_set():
        for name, q in queues.items():
            try:
                peeked = q.peek_messages(max_messages=32)
            except ResourceNotFoundError:
                continue
            for m in peeked:
                if m.id in seen or m.id in copies:
                    continue
                seen.add(m.id)
                if rng.randrange(100) >= percent:
                    continue
                delay = rng.randrange(max_delay_s + 1)
                copy = q.send_message(m.content, visibility_timeout=delay)
                copies[copy.id] = (name, time.time() + delay)
                print(json.dumps({"queue": name, "id": m.id, "copy": copy.id,
                                  "delay_s": delay, "text": m.content[:300]}), flush=True)
        time.sleep(0.05)
    # Every copy visible by now, and taken by a host (no longer to be peeked).
    while True:
        now = time.time()
        waiting = [c for c, (_, at) in copies.items() if at > now]
        visible = set()
        for q in queues.values():
            try:
                visible.update(m.id for m in q.peek_messages(max_messages=32))
            except ResourceNotFoundError:
                pass
        if not waiting and not (visible & copies.keys()):
            break
        time.sleep(0.2)
    print("drained", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
