"""SMTP server for the integration tests, on aiosmtpd.

One process listens on three loopback ports:
  plain     no TLS; AUTH allowed in clear
  starttls  STARTTLS required before any mail command
  tls       implicit TLS (SMTPS)
Authentication is optional (a client that does not authenticate may still send, so the
`tls = "none"` / no-auth mode can be tested), and recorded with every message:
  PLAIN, LOGIN  one user, password from --password
  XOAUTH2       the bearer token is checked against the OAuth server's introspection
                endpoint; an inactive token gets `535 5.7.3 Authentication unsuccessful`
                (what Microsoft 365 answers)

Every accepted message is stored as one JSON file in --maildir (written to a temporary name
and renamed, so a reader never sees half a file):
  {"mail_from", "rcpt_tos", "data" (the message text), "data_b64" (its exact bytes),
   "auth_mechanism", "auth_user", "oauth_client_id", "token_sha256", "tls", "port",
   "received_at"}

Fault injection, for tests that need a server misbehaving in a known way:
  - a recipient whose local part starts with `reject550` is refused with
    `550 5.1.1 Mailbox unavailable`; one starting with `tempfail451` with
    `451 4.3.0 Temporary failure, try again later`;
  - a file `<control-dir>/reject_next_<oauth client id>` makes the next XOAUTH2 login of that
    client fail even with a valid token, then is deleted: its content `challenge` answers
    Gmail-style (`334 <base64 JSON error>`, then 535), anything else answers 535 at once.

When every port is listening, the chosen ports are written as JSON to --ready-file.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.maildir = args.maildir
        self.control_dir = args.control_dir
        self.introspection_url = args.introspection_url
        self.introspection_client = args.introspection_client
        self.introspection_secret = args.introspection_secret

    # --- envelope --------------------------------------------------------------------

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local_part = address.split("@", 1)[0].lower()
        if local_part.startswith("reject550"):
            return "550 5.1.1 Mailbox unavailable"
        if local_part.startswith("tempfail451"):
            return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        auth = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", errors="replace"),
            "data_b64": base64.b64encode(envelope.content).decode("ascii"),
            "auth_mechanism": None,
            "auth_user": None,
            "oauth_client_id": None,
            "token_sha256": None,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "port": server.transport.get_extra_info("sockname")[1],
            "received_at": time.time(),
        }
        if isinstance(auth, LoginPassword):
            record["auth_mechanism"] = "PLAIN/LOGIN"
            record["auth_user"] = auth.login.decode("utf-8", errors="replace")
        elif isinstance(auth, dict):
            record.update(auth)
        name = f"{time.time_ns()}-{uuid.uuid4().hex}"
        temporary = os.path.join(self.maildir, f".{name}.tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.rename(temporary, os.path.join(self.maildir, f"{name}.json"))
        return "250 Message accepted for delivery"

    # --- XOAUTH2 ---------------------------------------------------------------------

    def introspect(self, token):
        body = urllib.parse.urlencode({"token": token}).encode("ascii")
        request = urllib.request.Request(self.introspection_url, data=body, method="POST")
        credentials = f"{self.introspection_client}:{self.introspection_secret}".encode("utf-8")
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as error:
            print(f"introspection failed: {error}", flush=True)
            return {"active": False}

    async def auth_XOAUTH2(self, server, args):
        if len(args) == 1:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
        fields = {}
        for part in blob.decode("utf-8", errors="replace").split("\x01"):
            if "=" in part:
                key, value = part.split("=", 1)
                fields[key] = value
        user = fields.get("user", "")
        bearer = fields.get("auth", "")
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else ""
        if not self.introspection_url or not token:
            return await self.reject(server, "535")
        answer = await asyncio.to_thread(self.introspect, token)
        if not answer.get("active"):
            return await self.reject(server, "535")
        client_id = answer.get("client_id", "")
        control = os.path.join(self.control_dir, f"reject_next_{client_id}")
        if client_id and os.path.exists(control):
            with open(control, encoding="utf-8") as file:
                style = file.read().strip()
            try:
                os.remove(control)
            except FileNotFoundError:
                pass
            return await self.reject(server, style)
        return AuthResult(
            success=True,
            auth_data={
                "auth_mechanism": "XOAUTH2",
                "auth_user": user,
                "oauth_client_id": client_id,
                "token_sha256": hashlib.sha256(token.encode("utf-8")).hexdigest(),
            },
        )

    async def reject(self, server, style):
        if style == "challenge":
            error = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
            # The client answers the challenge with an empty line (or hangs up).
            await server.challenge_auth(json.dumps(error))
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--control-dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", required=True)
    parser.add_argument("--introspection-url", default="")
    parser.add_argument("--introspection-client", default="smtp-server")
    parser.add_argument("--introspection-secret", default="")
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    os.makedirs(args.maildir, exist_ok=True)
    os.makedirs(args.control_dir, exist_ok=True)

    handler = Handler(args)

    def authenticator(server, session, envelope, mechanism, auth_data):
        good = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode("utf-8", errors="replace") == args.user
            and auth_data.password.decode("utf-8", errors="replace") == args.password
        )
        # handled=False makes aiosmtpd answer 535; with handled=True a client would wait.
        return AuthResult(success=good, handled=False, auth_data=auth_data if good else None)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    def factory(require_starttls, tls_context):
        def make():
            return SMTP(
                handler,
                hostname="localhost",
                ident="scl-test-smtp",
                authenticator=authenticator,
                auth_required=False,
                auth_require_tls=False,
                require_starttls=require_starttls,
                tls_context=tls_context,
                enable_SMTPUTF8=True,
                decode_data=False,
            )

        return make

    async def serve():
        loop = asyncio.get_running_loop()
        plain = await loop.create_server(factory(False, None), "127.0.0.1", 0)
        starttls = await loop.create_server(factory(True, context), "127.0.0.1", 0)
        implicit = await loop.create_server(factory(False, None), "127.0.0.1", 0, ssl=context)
        ports = {
            "plain": plain.sockets[0].getsockname()[1],
            "starttls": starttls.sockets[0].getsockname()[1],
            "tls": implicit.sockets[0].getsockname()[1],
        }
        temporary = args.ready_file + ".tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(ports, file)
        os.rename(temporary, args.ready_file)
        print(f"smtp server listening on {ports}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        for server in (plain, starttls, implicit):
            server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
