"""Creates a blob container in Azurite, signed with the emulator's
well-known account key: azurite_container.py PORT CONTAINER."""

import base64
import hashlib
import hmac
import sys
import urllib.request
from email.utils import formatdate

port, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date, version, kind = formatdate(usegmt=True), "2021-08-06", "application/octet-stream"
signed = "\n".join(["PUT", "", "", "", "", kind] + [""] * 6
                   + [f"x-ms-date:{date}", f"x-ms-version:{version}", f"/{account}/{account}/{container}\nrestype:container"])
signature = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
urllib.request.urlopen(urllib.request.Request(
    f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT", data=b"",
    headers={"Content-Type": kind, "x-ms-date": date, "x-ms-version": version,
             "Authorization": f"SharedKey {account}:{signature}"}))
