"""A plain Python webhook receiver, the baseline `bench ingest` compares with:
aiohttp, an HMAC-SHA256 check of the body, confluent-kafka with acks=all and
idempotence, and 202 once the delivery report arrived.

Usage: receiver.py LISTEN_PORT BROKERS TOPIC SECRET LINGER_MS
"""

import asyncio
import hashlib
import hmac
import sys
import threading

from aiohttp import web
from confluent_kafka import Producer


def main():
    port, brokers, topic, secret, linger_ms = sys.argv[1:6]
    secret = secret.encode()
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": float(linger_ms),
        }
    )

    def poll_forever():
        while True:
            producer.poll(0.1)

    threading.Thread(target=poll_forever, daemon=True).start()

    async def receive(request):
        body = await request.read()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        signature = request.headers.get("X-Webhook-Signature", "")
        if not hmac.compare_digest(expected, signature):
            return web.json_response({"error": "bad signature"}, status=401)
        loop = asyncio.get_running_loop()
        acked = loop.create_future()

        def delivered(error, _message):
            if error is None:
                loop.call_soon_threadsafe(acked.set_result, None)
            else:
                loop.call_soon_threadsafe(acked.set_exception, Exception(str(error)))

        producer.produce(topic, body, on_delivery=delivered)
        await acked
        return web.json_response({"accepted": True}, status=202)

    app = web.Application()
    app.router.add_post("/webhooks/mobaro", receive)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
